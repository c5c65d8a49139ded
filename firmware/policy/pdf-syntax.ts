import { createError } from '../box-errors.ts'

/**
 * PDF object syntax (ISO 32000-1 §7.2–7.3), enough to read cross-reference
 * sections, trailers and single objects from hostile files: comments, literal
 * strings with nesting and escapes, hex strings, names with #xx escapes,
 * numbers, arrays, dictionaries, indirect references and streams. Reading is
 * linear in the bytes it passes over, nesting is bounded, and nothing is
 * recursed into without a limit. Errors throw PdfSyntaxError.
 */

export class PdfSyntaxError extends createError('EPDF_SYNTAX', 'PdfSyntaxError') {}

export type PdfValue =
  | { t: 'null' }
  | { t: 'bool'; v: boolean }
  | { t: 'num'; v: number }
  | { t: 'str'; v: Buffer }
  | { t: 'name'; v: string }
  | { t: 'array'; v: PdfValue[] }
  | { t: 'dict'; v: Map<string, PdfValue>; duplicate?: string }
  | { t: 'ref'; num: number; gen: number }

const MAX_DEPTH = 64
const MAX_STRING = 1 << 20

export function isWhite(b: number | undefined): boolean {
  return b === 0x00 || b === 0x09 || b === 0x0a || b === 0x0c || b === 0x0d || b === 0x20
}

function isDelimiter(b: number | undefined): boolean {
  return b === 0x28 || b === 0x29 || b === 0x3c || b === 0x3e || b === 0x5b || b === 0x5d || b === 0x7b || b === 0x7d || b === 0x2f || b === 0x25
}

function isRegular(b: number | undefined): boolean {
  return b !== undefined && !isWhite(b) && !isDelimiter(b)
}

type Token =
  | { k: 'num'; v: number; int: boolean; at: number }
  | { k: 'kw'; v: string; at: number }
  | { k: 'name'; v: string; at: number }
  | { k: 'str'; v: Buffer; at: number }
  | { k: 'punct'; v: '<<' | '>>' | '[' | ']'; at: number }
  | { k: 'eof'; at: number }

/** A cursor over the file's bytes. `pos` can be set to read from any offset. */
export class Lexer {
  readonly buf: Buffer
  pos: number
  readonly end: number

  constructor(buf: Buffer, pos = 0, end = buf.length) {
    this.buf = buf
    this.pos = pos
    this.end = end
  }

  /** Skips whitespace and comments. */
  skip(): void {
    const b = this.buf
    while (this.pos < this.end) {
      const c = b[this.pos]
      if (isWhite(c)) this.pos++
      else if (c === 0x25) {
        while (this.pos < this.end && b[this.pos] !== 0x0a && b[this.pos] !== 0x0d) this.pos++
      } else break
    }
  }

  next(): Token {
    this.skip()
    const b = this.buf
    const at = this.pos
    if (at >= this.end) return { k: 'eof', at }
    const c = b[at]!
    if (c === 0x3c) {
      if (b[at + 1] === 0x3c) {
        this.pos += 2
        return { k: 'punct', v: '<<', at }
      }
      return { k: 'str', v: this.#hexString(), at }
    }
    if (c === 0x3e) {
      if (b[at + 1] !== 0x3e) throw new PdfSyntaxError(`stray ">" at ${at}`)
      this.pos += 2
      return { k: 'punct', v: '>>', at }
    }
    if (c === 0x5b || c === 0x5d) {
      this.pos++
      return { k: 'punct', v: c === 0x5b ? '[' : ']', at }
    }
    if (c === 0x28) return { k: 'str', v: this.#literalString(), at }
    if (c === 0x2f) return { k: 'name', v: this.#name(), at }
    if (c === 0x29 || c === 0x7b || c === 0x7d) throw new PdfSyntaxError(`unexpected "${String.fromCharCode(c)}" at ${at}`)
    let e = at
    while (e < this.end && isRegular(b[e])) e++
    this.pos = e
    const text = b.subarray(at, e).toString('latin1')
    if (text.length < 32 && /^[+-]?(\d+\.?\d*|\.\d+)$/.test(text)) return { k: 'num', v: Number(text), int: /^[+-]?\d+$/.test(text), at }
    return { k: 'kw', v: text, at }
  }

  #literalString(): Buffer {
    const b = this.buf
    const out: number[] = []
    let depth = 1
    let i = this.pos + 1
    while (i < this.end) {
      const c = b[i]!
      if (c === 0x5c) {
        const n = b[i + 1]
        i += 2
        if (n === undefined) break
        const esc: Record<number, number> = { 0x6e: 0x0a, 0x72: 0x0d, 0x74: 0x09, 0x62: 0x08, 0x66: 0x0c, 0x28: 0x28, 0x29: 0x29, 0x5c: 0x5c }
        if (esc[n] !== undefined) out.push(esc[n])
        else if (n >= 0x30 && n <= 0x37) {
          let v = n - 0x30
          for (let k = 0; k < 2 && b[i]! >= 0x30 && b[i]! <= 0x37; k++) v = v * 8 + (b[i++]! - 0x30)
          out.push(v & 0xff)
        } else if (n === 0x0d) {
          if (b[i] === 0x0a) i++
        } else if (n !== 0x0a) out.push(n)
        continue
      }
      if (c === 0x28) depth++
      else if (c === 0x29 && --depth === 0) {
        this.pos = i + 1
        return Buffer.from(out)
      }
      out.push(c)
      if (out.length > MAX_STRING) throw new PdfSyntaxError('string too long')
      i++
    }
    throw new PdfSyntaxError('unterminated string')
  }

  #hexString(): Buffer {
    const b = this.buf
    let i = this.pos + 1
    let hex = ''
    while (i < this.end && b[i] !== 0x3e) {
      const c = b[i]!
      if (!isWhite(c)) {
        if (!/[0-9A-Fa-f]/.test(String.fromCharCode(c))) throw new PdfSyntaxError(`bad hex string at ${i}`)
        hex += String.fromCharCode(c)
        if (hex.length > 2 * MAX_STRING) throw new PdfSyntaxError('string too long')
      }
      i++
    }
    if (i >= this.end) throw new PdfSyntaxError('unterminated hex string')
    this.pos = i + 1
    if (hex.length % 2) hex += '0'
    return Buffer.from(hex, 'hex')
  }

  #name(): string {
    const b = this.buf
    let i = this.pos + 1
    let out = ''
    while (i < this.end && isRegular(b[i])) {
      if (b[i] === 0x23 && /^[0-9A-Fa-f]{2}$/.test(b.subarray(i + 1, i + 3).toString('latin1'))) {
        out += String.fromCharCode(parseInt(b.subarray(i + 1, i + 3).toString('latin1'), 16))
        i += 3
      } else out += String.fromCharCode(b[i++]!)
      if (out.length > 256) throw new PdfSyntaxError('name too long')
    }
    this.pos = i
    return out
  }
}

/**
 * Reads one object at the lexer's position. `N G R` becomes a reference.
 * Dictionaries record a key given twice (readers disagree on which wins).
 */
export function readObject(lx: Lexer, depth = 0): PdfValue {
  if (depth > MAX_DEPTH) throw new PdfSyntaxError('objects nested too deeply')
  const tok = lx.next()
  switch (tok.k) {
    case 'eof':
      throw new PdfSyntaxError('unexpected end of file')
    case 'str':
      return { t: 'str', v: tok.v }
    case 'name':
      return { t: 'name', v: tok.v }
    case 'num': {
      if (tok.int && tok.v >= 0) {
        // Maybe "N G R": look ahead two tokens, else rewind.
        const save = lx.pos
        const g = lx.next()
        if (g.k === 'num' && g.int && g.v >= 0) {
          const r = lx.next()
          if (r.k === 'kw' && r.v === 'R') return { t: 'ref', num: tok.v, gen: g.v }
        }
        lx.pos = save
      }
      return { t: 'num', v: tok.v }
    }
    case 'kw':
      if (tok.v === 'true' || tok.v === 'false') return { t: 'bool', v: tok.v === 'true' }
      if (tok.v === 'null') return { t: 'null' }
      throw new PdfSyntaxError(`unexpected keyword "${tok.v.slice(0, 20)}" at ${tok.at}`)
    case 'punct':
      if (tok.v === '[') {
        const items: PdfValue[] = []
        for (;;) {
          lx.skip()
          if (lx.buf[lx.pos] === 0x5d) {
            lx.pos++
            return { t: 'array', v: items }
          }
          items.push(readObject(lx, depth + 1))
        }
      }
      if (tok.v === '<<') {
        const map = new Map<string, PdfValue>()
        let duplicate: string | undefined
        for (;;) {
          const k = lx.next()
          if (k.k === 'punct' && k.v === '>>') return duplicate ? { t: 'dict', v: map, duplicate } : { t: 'dict', v: map }
          if (k.k !== 'name') throw new PdfSyntaxError(`dictionary key expected at ${k.at}`)
          const value = readObject(lx, depth + 1)
          if (map.has(k.v)) duplicate ??= k.v
          map.set(k.v, value)
        }
      }
      throw new PdfSyntaxError(`unexpected "${tok.v}" at ${tok.at}`)
  }
}

/** Reads the keyword at the lexer's position, or throws. */
export function expectKeyword(lx: Lexer, kw: string): void {
  const t = lx.next()
  if (t.k !== 'kw' || t.v !== kw) throw new PdfSyntaxError(`"${kw}" expected at ${t.at}`)
}

/** Reads a non-negative integer at the lexer's position, or throws. */
export function expectInt(lx: Lexer): number {
  const t = lx.next()
  if (t.k !== 'num' || !t.int || t.v < 0) throw new PdfSyntaxError(`integer expected at ${t.at}`)
  return t.v
}

export function dictGet(d: PdfValue | undefined, key: string): PdfValue | undefined {
  return d?.t === 'dict' ? d.v.get(key) : undefined
}

export function intOf(v: PdfValue | undefined): number | undefined {
  return v?.t === 'num' && Number.isInteger(v.v) ? v.v : undefined
}

export function nameOf(v: PdfValue | undefined): string | undefined {
  return v?.t === 'name' ? v.v : undefined
}
