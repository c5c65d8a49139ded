/**
 * Byte-exact MIME structure (RFC 5322, RFC 2045/2046): header fields as they
 * were sent (folding kept), the body, and multipart children with the byte
 * ranges they occupy. Signing needs exact bytes, so nothing is decoded or
 * re-serialised here unless asked.
 */

export interface HeaderField {
  /** Field name as written. */
  name: string
  /** Lower-cased name for lookups. */
  key: string
  /** The whole field including its terminating CRLF and any folding. */
  raw: Buffer
  /** Unfolded value without the leading space after the colon. */
  value: string
}

export interface Entity {
  headers: HeaderField[]
  /** Everything after the blank line that ends the header. */
  body: Buffer
}

const CRLF = Buffer.from('\r\n')
const CRLFCRLF = Buffer.from('\r\n\r\n')

/** Splits a message or body part into header fields and body. Lines must end in CRLF. */
export function parseEntity(buf: Buffer): Entity {
  let headerEnd: number
  let bodyStart: number
  if (buf.subarray(0, 2).equals(CRLF)) {
    headerEnd = 0
    bodyStart = 2
  } else {
    const i = buf.indexOf(CRLFCRLF)
    headerEnd = i < 0 ? buf.length : i + 2
    bodyStart = i < 0 ? buf.length : i + 4
  }
  const headers: HeaderField[] = []
  let start = 0
  while (start < headerEnd) {
    let end = buf.indexOf(CRLF, start)
    if (end < 0 || end >= headerEnd) end = headerEnd - 2
    // Continuation lines start with SP or HTAB (RFC 5322 §2.2.3).
    while (end + 2 < headerEnd && (buf[end + 2] === 0x20 || buf[end + 2] === 0x09)) {
      const next = buf.indexOf(CRLF, end + 2)
      end = next < 0 || next >= headerEnd ? headerEnd - 2 : next
    }
    const raw = buf.subarray(start, end + 2)
    const text = raw.toString('latin1')
    const colon = text.indexOf(':')
    if (colon > 0) {
      const name = text.slice(0, colon).trim()
      headers.push({ name, key: name.toLowerCase(), raw, value: unfold(text.slice(colon + 1)) })
    }
    start = end + 2
  }
  return { headers, body: buf.subarray(bodyStart) }
}

export function unfold(value: string): string {
  return value
    .replace(/\r\n(?=[ \t])/g, '')
    .replace(/^[ \t]+/, '')
    .replace(/\r\n$/, '')
    .trimEnd()
}

export function header(entity: Entity, key: string): string | undefined {
  return entity.headers.find((h) => h.key === key)?.value
}

export interface ContentType {
  type: string
  subtype: string
  /** "type/subtype", lower case. */
  mime: string
  params: Record<string, string>
}

/** Parses a Content-Type value; RFC 2045 default text/plain; charset=us-ascii. */
export function contentType(value: string | undefined): ContentType {
  const parsed = parseParams(value ?? 'text/plain; charset=us-ascii')
  const [type = 'text', subtype = 'plain'] = parsed.value
    .toLowerCase()
    .split('/')
    .map((s) => s.trim())
  return { type, subtype, mime: `${type}/${subtype}`, params: parsed.params }
}

/** A header value with `; name=value` parameters (quoted strings and RFC 2231 continuations are handled). */
export function parseParams(value: string): { value: string; params: Record<string, string> } {
  const parts: string[] = []
  let cur = ''
  let quoted = false
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!
    if (c === '"') quoted = !quoted
    if (c === '\\' && quoted) {
      cur += value[++i] ?? ''
      continue
    }
    if (c === ';' && !quoted) {
      parts.push(cur)
      cur = ''
    } else cur += c
  }
  parts.push(cur)
  const params: Record<string, string> = {}
  const continued: Record<string, string[]> = {}
  for (const p of parts.slice(1)) {
    const eq = p.indexOf('=')
    if (eq < 0) continue
    const key = p.slice(0, eq).trim().toLowerCase()
    const v = p
      .slice(eq + 1)
      .trim()
      .replace(/^"(.*)"$/s, '$1')
    const m = /^(.+?)\*(\d+)?\*?$/.exec(key)
    if (m) (continued[m[1]!] ??= [])[Number(m[2] ?? 0)] = v
    else params[key] = v
  }
  for (const [k, segs] of Object.entries(continued)) {
    const joined = segs.join('')
    const ext = /^([^']*)'[^']*'(.*)$/.exec(joined)
    params[k] = ext ? decodeRfc2231(ext[2]!, ext[1]!) : joined
  }
  return { value: parts[0]!.trim(), params }
}

function decodeRfc2231(text: string, charset: string): string {
  const bytes = Buffer.from(
    text.replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))),
    'latin1',
  )
  return new TextDecoder(charset || 'utf-8', { fatal: false }).decode(bytes)
}

export interface Part {
  /** The part's bytes: its header and body. */
  bytes: Buffer
  /** Offset of `bytes` in the multipart body it came from. */
  offset: number
}

/**
 * The body parts of a multipart body (RFC 2046 §5.1.1): the bytes between
 * delimiter lines, without the CRLF that belongs to the next delimiter.
 */
export function splitMultipart(body: Buffer, boundary: string): { parts: Part[]; preamble: Buffer; epilogue: Buffer } | undefined {
  const delimiter = Buffer.from(`--${boundary}`)
  const starts: { at: number; lineEnd: number; close: boolean }[] = []
  let pos = 0
  for (;;) {
    const i = body.indexOf(delimiter, pos)
    if (i < 0) break
    const atLineStart = i === 0 || (body[i - 1] === 0x0a && body[i - 2] === 0x0d)
    const after = i + delimiter.length
    const close = body[after] === 0x2d && body[after + 1] === 0x2d
    let lineEnd = body.indexOf(CRLF, after)
    if (lineEnd < 0) lineEnd = body.length
    else lineEnd += 2
    // Only transport padding (spaces, tabs) may follow the boundary on its line.
    const rest = body
      .subarray(after + (close ? 2 : 0), lineEnd)
      .toString('latin1')
      .replace(/\r\n$/, '')
    if (atLineStart && /^[ \t]*$/.test(rest)) {
      starts.push({ at: i, lineEnd, close })
      if (close) break
    }
    pos = after
  }
  if (starts.length < 2 || !starts[starts.length - 1]!.close) return undefined
  const parts: Part[] = []
  for (let k = 0; k < starts.length - 1; k++) {
    const from = starts[k]!.lineEnd
    const to = Math.max(from, starts[k + 1]!.at - 2) // the CRLF before a delimiter belongs to it
    parts.push({ bytes: body.subarray(from, to), offset: from })
  }
  const first = starts[0]!.at
  return { parts, preamble: body.subarray(0, Math.max(0, first - 2)), epilogue: body.subarray(starts[starts.length - 1]!.lineEnd) }
}

/** Lines end with CRLF; bare LF and bare CR become CRLF. Returns `buf` itself when it already conforms. */
export function toCrlf(buf: Buffer): Buffer {
  if (isCrlfOnly(buf)) return buf
  return Buffer.from(buf.toString('latin1').replace(/\r\n|\r|\n/g, '\r\n'), 'latin1')
}

function isCrlfOnly(buf: Buffer): boolean {
  for (let i = buf.indexOf(0x0a); i !== -1; i = buf.indexOf(0x0a, i + 1)) if (buf[i - 1] !== 0x0d) return false
  for (let i = buf.indexOf(0x0d); i !== -1; i = buf.indexOf(0x0d, i + 1)) if (buf[i + 1] !== 0x0a) return false
  return true
}
