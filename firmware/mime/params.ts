import { decodeRfc2231, decodeWords } from './words.ts'

/** A structured header value: `type/subtype; name=value; …` (RFC 2045 §5.1, RFC 2183). */
export interface ParamValue {
  /** The value before the first `;`, trimmed (e.g. "multipart/mixed", "attachment"). */
  value: string
  /** Parameters by lower-cased name; RFC 2231 continuations joined and decoded, RFC 2047 words decoded. */
  params: Record<string, string>
  /**
   * Why readers could take this value differently, or undefined: a parameter
   * given twice (including `filename` beside `filename*`), RFC 2231 sections
   * given twice or with a gap, an unterminated quoted string.
   */
  ambiguity: string | undefined
}

const TSPECIAL_END = new Set([';', '='])

/**
 * Parses a header value with parameters in one pass (quoted strings with
 * backslash escapes, RFC 2231 `name*`, `name*0*`, … sections). Never throws:
 * what makes the value ambiguous is reported for the caller to refuse.
 */
export function parseParams(text: string): ParamValue {
  let i = 0
  const n = text.length
  let ambiguity: string | undefined
  const note = (why: string) => (ambiguity ??= why)

  // The leading value: up to the first ";" outside quotes.
  let value = ''
  let quoted = false
  for (; i < n; i++) {
    const c = text[i]!
    if (c === '"') quoted = !quoted
    else if (c === '\\' && quoted) value += text[++i] ?? ''
    else if (c === ';' && !quoted) break
    if (c !== '\\' || !quoted) value += c
  }
  if (quoted) note('an unterminated quoted string')

  const plain = new Map<string, string>()
  const extended = new Map<string, string>() // name* (one piece, charset'lang'value)
  const sections = new Map<string, Map<number, { text: string; encoded: boolean }>>()
  const seen = (name: string) => plain.has(name) || extended.has(name) || sections.has(name)

  while (i < n) {
    i++ // the ";"
    while (i < n && isSpace(text[i]!)) i++
    let name = ''
    while (i < n && !TSPECIAL_END.has(text[i]!) && !isSpace(text[i]!)) name += text[i++]
    while (i < n && isSpace(text[i]!)) i++
    if (text[i] !== '=') {
      // "; " at the end or a name without a value: skip to the next ";".
      while (i < n && text[i] !== ';') i++
      if (name) note(`parameter "${name}" has no value`)
      continue
    }
    i++
    while (i < n && isSpace(text[i]!)) i++
    let v = ''
    if (text[i] === '"') {
      i++
      let closed = false
      for (; i < n; i++) {
        const c = text[i]!
        if (c === '\\') {
          v += text[++i] ?? ''
          continue
        }
        if (c === '"') {
          closed = true
          i++
          break
        }
        v += c
      }
      if (!closed) note('an unterminated quoted string')
      while (i < n && text[i] !== ';') {
        if (!isSpace(text[i]!)) note(`text after the quoted value of "${name}"`)
        i++
      }
    } else {
      while (i < n && text[i] !== ';') v += text[i++]
      v = v.trim()
    }
    const key = name.toLowerCase()
    const star = key.indexOf('*')
    if (star < 0) {
      if (seen(key)) note(`parameter "${key}" is given more than once`)
      plain.set(key, v)
      continue
    }
    const base = key.slice(0, star)
    const rest = key.slice(star + 1)
    if (rest === '') {
      if (seen(base)) note(`parameter "${base}" is given more than once`)
      extended.set(base, v)
      continue
    }
    const encoded = rest.endsWith('*')
    const num = encoded ? rest.slice(0, -1) : rest
    if (!/^(0|[1-9][0-9]{0,3})$/.test(num)) {
      note(`parameter "${key}" is not a valid RFC 2231 section`)
      continue
    }
    if (plain.has(base) || extended.has(base)) note(`parameter "${base}" is given more than once`)
    let secs = sections.get(base)
    if (!secs) sections.set(base, (secs = new Map<number, { text: string; encoded: boolean }>()))
    if (secs.has(Number(num))) note(`section ${num} of parameter "${base}" is given more than once`)
    secs.set(Number(num), { text: v, encoded })
  }

  const params: Record<string, string> = {}
  for (const [k, v] of plain) params[k] = decodeWords(v)
  for (const [k, v] of extended) params[k] = decodeRfc2231(v)
  for (const [k, secs] of sections) {
    const parts: { text: string; encoded: boolean }[] = []
    for (let s = 0; s < secs.size; s++) {
      const p = secs.get(s)
      if (!p) {
        note(`parameter "${k}" has a gap in its RFC 2231 sections`)
        break
      }
      parts.push(p)
    }
    // Section 0 of an encoded value carries the charset; later encoded sections are only percent-encoded.
    const charsetPrefix = parts[0]?.encoded ? (/^[^']*'[^']*'/.exec(parts[0].text)?.[0] ?? '') : ''
    if (parts.some((p) => p.encoded)) {
      const joined = parts.map((p, idx) => (p.encoded ? (idx === 0 ? p.text.slice(charsetPrefix.length) : p.text) : encodeURIComponent(p.text))).join('')
      params[k] = decodeRfc2231(`${charsetPrefix || "us-ascii''"}${joined}`)
    } else params[k] = parts.map((p) => p.text).join('')
  }
  return { value: value.trim(), params, ambiguity }
}

function isSpace(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\r' || c === '\n'
}
