import { inflateSync } from 'node:zlib'
import { dictGet, expectInt, expectKeyword, intOf, isWhite, Lexer, nameOf, PdfSyntaxError, readObject, type PdfValue } from './pdf-syntax.ts'

/**
 * Is this PDF encrypted (M13)? Decided by reading the file as a PDF reader
 * does, never by looking for the text "/Encrypt":
 *
 * 1. `startxref` at the end gives the newest cross-reference section: a
 *    classic table with its trailer, or a cross-reference stream (PDF 1.5+);
 *    older sections are read through `/Prev` (incremental updates) and
 *    `/XRefStm` (hybrid files), newest entries first.
 * 2. The newest trailer's `/Encrypt` is parsed as PDF syntax — a comment, a
 *    string, a nested dictionary or `null` is not an encryption dictionary.
 * 3. An indirect `/Encrypt` is resolved through the cross-reference entries to
 *    the object at its offset, which must be that object and a dictionary.
 * 4. The dictionary must name a security handler (`/Filter`: Standard, or a
 *    public-key handler) with a valid `/V` (and for Standard `/R`, `/O`, `/U`,
 *    `/P`; for a public-key handler its recipients).
 *
 * A reference to an object that does not exist reads as null, as in every
 * reader: not encrypted. A file whose structure cannot be read this way is
 * `unreadable` — the policy refuses it rather than guess. Work is linear in the
 * file; cross-reference streams are inflated with an output limit.
 */
export type PdfVerdict = 'encrypted' | 'unencrypted' | 'unreadable' | 'not-a-pdf'

export interface PdfJudgement {
  verdict: PdfVerdict
  /** Why it is unreadable or unencrypted, for the log and tests. */
  reason: string
  /** The security handler, when encrypted. */
  filter?: string
}

const MAX_SECTIONS = 64
const MAX_INFLATE = 32 << 20

type Entry = { type: 1; offset: number; gen: number } | { type: 2; stream: number; index: number } | { type: 0 }

export function pdfEncryption(pdf: Buffer): PdfJudgement {
  // A reader accepts a header within the first kilobyte; offsets then count from it.
  const base = pdf.subarray(0, 1024).indexOf('%PDF-')
  if (base < 0) return { verdict: 'not-a-pdf', reason: 'no %PDF- header' }
  try {
    return judge(pdf, base)
  } catch (err) {
    if (
      err instanceof PdfSyntaxError ||
      err instanceof RangeError ||
      (err as NodeJS.ErrnoException).code?.startsWith('Z_') ||
      (err as Error).message?.includes('zlib')
    ) {
      return { verdict: 'unreadable', reason: (err as Error).message }
    }
    throw err
  }
}

function judge(pdf: Buffer, base: number): PdfJudgement {
  const start = findStartxref(pdf)
  const entries = new Map<number, Entry>()
  let trailer: PdfValue | undefined
  const seen = new Set<number>()
  const queue: number[] = [start]
  while (queue.length) {
    const offset = queue.shift()!
    if (seen.has(offset)) throw new PdfSyntaxError('the cross-reference sections form a loop')
    if (seen.size >= MAX_SECTIONS) throw new PdfSyntaxError(`more than ${MAX_SECTIONS} cross-reference sections`)
    seen.add(offset)
    const section = readSection(pdf, base + offset)
    for (const [n, e] of section.entries) if (!entries.has(n)) entries.set(n, e)
    trailer ??= section.trailer
    if (section.trailer.t === 'dict' && section.trailer.duplicate) throw new PdfSyntaxError(`a trailer gives ${section.trailer.duplicate} twice`)
    const stm = intOf(dictGet(section.trailer, 'XRefStm'))
    if (stm !== undefined && section.kind === 'table') {
      // Hybrid file: the stream's entries come after the table's own.
      const hybrid = readSection(pdf, base + stm)
      for (const [n, e] of hybrid.entries) if (!entries.has(n) || entries.get(n)!.type === 0) entries.set(n, e)
    }
    const prev = dictGet(section.trailer, 'Prev')
    if (prev !== undefined) {
      const p = intOf(prev)
      if (p === undefined || p < 0) throw new PdfSyntaxError('/Prev is not an offset')
      queue.push(p)
    }
  }
  let encrypt = dictGet(trailer, 'Encrypt')
  if (encrypt === undefined) return { verdict: 'unencrypted', reason: 'the trailer has no /Encrypt' }
  if (encrypt.t === 'ref') {
    const e = entries.get(encrypt.num)
    if (!e || e.type === 0) return { verdict: 'unencrypted', reason: `/Encrypt refers to object ${encrypt.num}, which does not exist` }
    if (e.type === 2) throw new PdfSyntaxError('the encryption dictionary is in an object stream (ISO 32000-1 §7.5.7 forbids it)')
    if (e.gen !== encrypt.gen) return { verdict: 'unencrypted', reason: `/Encrypt refers to ${encrypt.num} ${encrypt.gen} R, which does not exist` }
    encrypt = objectAt(pdf, base + e.offset, encrypt.num, encrypt.gen).value
  }
  if (encrypt.t === 'null') return { verdict: 'unencrypted', reason: '/Encrypt is null' }
  if (encrypt.t !== 'dict') throw new PdfSyntaxError(`/Encrypt is a ${encrypt.t}, not a dictionary`)
  if (encrypt.duplicate) throw new PdfSyntaxError(`the encryption dictionary gives ${encrypt.duplicate} twice`)
  return checkHandler(encrypt)
}

function checkHandler(d: PdfValue): PdfJudgement {
  const filter = nameOf(dictGet(d, 'Filter'))
  const v = intOf(dictGet(d, 'V'))
  if (!filter) throw new PdfSyntaxError('the encryption dictionary names no security handler (/Filter)')
  if (v === undefined || v < 1 || v > 5) throw new PdfSyntaxError(`the encryption dictionary has /V ${v ?? 'missing'} (1–5 expected)`)
  if (filter === 'Standard') {
    const r = intOf(dictGet(d, 'R'))
    const o = dictGet(d, 'O')
    const u = dictGet(d, 'U')
    if (r === undefined || r < 2 || r > 6) throw new PdfSyntaxError(`the standard security handler has /R ${r ?? 'missing'} (2–6 expected)`)
    if (o?.t !== 'str' || u?.t !== 'str' || intOf(dictGet(d, 'P')) === undefined) throw new PdfSyntaxError('the standard security handler lacks /O, /U or /P')
    return { verdict: 'encrypted', reason: `Standard security handler, V ${v}, R ${r}`, filter }
  }
  // A public-key handler (e.g. Adobe.PubSec): recipients directly (V < 4) or in crypt filters (V 4, 5).
  const recipients = dictGet(d, 'Recipients')
  const cf = dictGet(d, 'CF')
  if (recipients?.t !== 'array' && cf?.t !== 'dict') throw new PdfSyntaxError(`the ${filter} security handler names no recipients`)
  return { verdict: 'encrypted', reason: `${filter} security handler, V ${v}`, filter }
}

/** The offset after the last `startxref` in the file's last kilobytes. */
function findStartxref(pdf: Buffer): number {
  const from = Math.max(0, pdf.length - 2048)
  const at = pdf.lastIndexOf('startxref')
  if (at < from) throw new PdfSyntaxError('no startxref near the end of the file')
  const lx = new Lexer(pdf, at + 'startxref'.length)
  return expectInt(lx)
}

interface Section {
  kind: 'table' | 'stream'
  entries: Map<number, Entry>
  trailer: PdfValue
}

function readSection(pdf: Buffer, at: number): Section {
  if (at < 0 || at >= pdf.length) throw new PdfSyntaxError(`a cross-reference offset ${at} outside the file`)
  const lx = new Lexer(pdf, at)
  lx.skip()
  if (pdf.subarray(lx.pos, lx.pos + 4).toString('latin1') === 'xref') return readTable(lx)
  const obj = objectAt(pdf, at)
  if (nameOf(dictGet(obj.value, 'Type')) !== 'XRef') throw new PdfSyntaxError(`no cross-reference section at offset ${at}`)
  return { kind: 'stream', entries: xrefStreamEntries(obj.value, obj.stream), trailer: obj.value }
}

function readTable(lx: Lexer): Section {
  lx.pos += 4
  const entries = new Map<number, Entry>()
  for (;;) {
    lx.skip()
    if (lx.buf.subarray(lx.pos, lx.pos + 7).toString('latin1') === 'trailer') {
      lx.pos += 7
      break
    }
    const first = expectInt(lx)
    const count = expectInt(lx)
    if (count > 10_000_000) throw new PdfSyntaxError('a cross-reference subsection that is too large')
    for (let i = 0; i < count; i++) {
      const offset = expectInt(lx)
      const gen = expectInt(lx)
      const t = lx.next()
      if (t.k !== 'kw' || (t.v !== 'n' && t.v !== 'f')) throw new PdfSyntaxError(`a cross-reference entry without n or f at ${t.at}`)
      const num = first + i
      if (!entries.has(num)) entries.set(num, t.v === 'n' && offset > 0 ? { type: 1, offset, gen } : { type: 0 })
    }
  }
  const trailer = readObject(lx)
  if (trailer.t !== 'dict') throw new PdfSyntaxError('the trailer is not a dictionary')
  return { kind: 'table', entries, trailer }
}

/** The indirect object at `at` ("N G obj … endobj"), checked to be object `num` `gen` when given; streams are returned raw. */
function objectAt(pdf: Buffer, at: number, num?: number, gen?: number): { value: PdfValue; stream: Buffer | undefined } {
  if (at < 0 || at >= pdf.length) throw new PdfSyntaxError(`an object offset ${at} outside the file`)
  const lx = new Lexer(pdf, at)
  const n = expectInt(lx)
  const g = expectInt(lx)
  expectKeyword(lx, 'obj')
  if ((num !== undefined && n !== num) || (gen !== undefined && g !== gen))
    throw new PdfSyntaxError(`object ${num} ${gen} expected at offset ${at}, found ${n} ${g}`)
  const value = readObject(lx)
  const save = lx.pos
  const t = lx.next()
  if (t.k === 'kw' && t.v === 'stream') {
    // The data starts after CRLF or LF (§7.3.8.1).
    let s = lx.pos
    if (pdf[s] === 0x0d && pdf[s + 1] === 0x0a) s += 2
    else if (pdf[s] === 0x0a) s += 1
    else throw new PdfSyntaxError('"stream" not followed by an end of line')
    const length = intOf(dictGet(value, 'Length'))
    let e: number
    if (length !== undefined && length >= 0 && s + length <= pdf.length && endstreamAt(pdf, s + length)) e = s + length
    else {
      const found = pdf.indexOf('endstream', s)
      if (found < 0) throw new PdfSyntaxError('a stream without endstream')
      e = found
      while (e > s && (pdf[e - 1] === 0x0a || pdf[e - 1] === 0x0d)) e--
    }
    return { value, stream: pdf.subarray(s, e) }
  }
  lx.pos = save
  return { value, stream: undefined }
}

function endstreamAt(pdf: Buffer, at: number): boolean {
  let i = at
  while (i < pdf.length && isWhite(pdf[i])) i++
  return pdf.subarray(i, i + 9).toString('latin1') === 'endstream'
}

/** Entries of a cross-reference stream (§7.5.8): /W field widths, /Index ranges, FlateDecode with PNG predictors. */
function xrefStreamEntries(dict: PdfValue, stream: Buffer | undefined): Map<number, Entry> {
  if (!stream) throw new PdfSyntaxError('a cross-reference stream without data')
  const w = dictGet(dict, 'W')
  if (w?.t !== 'array' || w.v.length !== 3) throw new PdfSyntaxError('a cross-reference stream without /W [a b c]')
  const widths = w.v.map((x) => intOf(x))
  if (widths.some((x) => x === undefined || x < 0 || x > 8)) throw new PdfSyntaxError('bad /W widths')
  const [w0, w1, w2] = widths as [number, number, number]
  const row = w0 + w1 + w2
  if (row === 0) throw new PdfSyntaxError('/W widths sum to zero')
  const size = intOf(dictGet(dict, 'Size'))
  if (size === undefined || size < 0) throw new PdfSyntaxError('a cross-reference stream without /Size')
  const idx = dictGet(dict, 'Index')
  const ranges: [number, number][] = []
  if (idx === undefined) ranges.push([0, size])
  else {
    if (idx.t !== 'array' || idx.v.length % 2) throw new PdfSyntaxError('a bad /Index')
    for (let i = 0; i < idx.v.length; i += 2) {
      const a = intOf(idx.v[i])
      const b = intOf(idx.v[i + 1])
      if (a === undefined || b === undefined || a < 0 || b < 0) throw new PdfSyntaxError('a bad /Index')
      ranges.push([a, b])
    }
  }
  const data = unpredict(decodeStream(dict, stream), dictGet(dict, 'DecodeParms'), row)
  const entries = new Map<number, Entry>()
  let pos = 0
  const field = (width: number, dflt: number) => {
    if (width === 0) return dflt
    let v = 0
    for (let k = 0; k < width; k++) v = v * 256 + data[pos + k]!
    pos += width
    return v
  }
  for (const [first, count] of ranges) {
    for (let i = 0; i < count; i++) {
      if (pos + row > data.length) throw new PdfSyntaxError('a cross-reference stream shorter than its /Index says')
      const type = field(w0, 1)
      const a = field(w1, 0)
      const b = field(w2, 0)
      const num = first + i
      if (entries.has(num)) continue
      if (type === 1) entries.set(num, a > 0 ? { type: 1, offset: a, gen: b } : { type: 0 })
      else if (type === 2) entries.set(num, { type: 2, stream: a, index: b })
      else entries.set(num, { type: 0 })
    }
  }
  return entries
}

function decodeStream(dict: PdfValue, data: Buffer): Buffer {
  const f = dictGet(dict, 'Filter')
  const filters = f === undefined ? [] : f.t === 'array' ? f.v.map(nameOf) : [nameOf(f)]
  if (filters.length === 0) return data
  if (filters.length === 1 && filters[0] === 'FlateDecode') return inflateSync(data, { maxOutputLength: MAX_INFLATE })
  throw new PdfSyntaxError(`a cross-reference stream with filter ${filters.join(', ')} (FlateDecode expected)`)
}

/** Undoes a PNG predictor (/Predictor 10–15) over rows of `columns` bytes; /Predictor 1 or none is the data itself. */
function unpredict(data: Buffer, parms: PdfValue | undefined, columns: number): Buffer {
  const predictor = intOf(dictGet(parms, 'Predictor')) ?? 1
  if (predictor === 1) return data
  if (predictor < 10 || predictor > 15) throw new PdfSyntaxError(`predictor ${predictor} is not supported for cross-reference streams`)
  const cols = intOf(dictGet(parms, 'Columns')) ?? 1
  if (cols !== columns) throw new PdfSyntaxError('/Columns does not match /W')
  const stride = cols + 1
  const rows = Math.floor(data.length / stride)
  const out = Buffer.alloc(rows * cols)
  for (let r = 0; r < rows; r++) {
    const type = data[r * stride]!
    for (let c = 0; c < cols; c++) {
      const x = data[r * stride + 1 + c]!
      const left = c > 0 ? out[r * cols + c - 1]! : 0
      const up = r > 0 ? out[(r - 1) * cols + c]! : 0
      const upLeft = r > 0 && c > 0 ? out[(r - 1) * cols + c - 1]! : 0
      let v: number
      switch (type) {
        case 0:
          v = x
          break
        case 1:
          v = x + left
          break
        case 2:
          v = x + up
          break
        case 3:
          v = x + ((left + up) >> 1)
          break
        case 4: {
          const p = left + up - upLeft
          const pa = Math.abs(p - left)
          const pb = Math.abs(p - up)
          const pc = Math.abs(p - upLeft)
          v = x + (pa <= pb && pa <= pc ? left : pb <= pc ? up : upLeft)
          break
        }
        default:
          throw new PdfSyntaxError(`PNG filter type ${type} in a cross-reference stream`)
      }
      out[r * cols + c] = v & 0xff
    }
  }
  return out
}
