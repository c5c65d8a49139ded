import { isAscii } from 'node:buffer'

/**
 * Transfer encodings for re-encoding 8-bit content to 7-bit (RFC 2045 §6.7, §6.8).
 *
 * Kept hand-written after a spike against nodemailer's libqp and libbase64 (#34; the cases are
 * pinned in encode.test.ts): libbase64 writes the same lines, so it would add a package for six
 * lines; libqp leaves a lone CR or LF raw, which the transport's line-ending repair then changes
 * under a signature, and its decoder drops whitespace before a line end, which Python's
 * binascii (the verifiers' reader) keeps.
 */

/** Base64 in lines of 76 characters, CRLF-terminated. */
export function base64Lines(data: Buffer): Buffer {
  const b64 = data.toString('base64')
  const lines: string[] = []
  for (let i = 0; i < b64.length; i += 76) lines.push(b64.slice(i, i + 76))
  return Buffer.from(lines.length ? `${lines.join('\r\n')}\r\n` : '', 'ascii')
}

/**
 * Quoted-printable for text with CRLF line breaks: bytes outside printable
 * ASCII, "=" and whitespace before a line end are escaped; encoded lines stay
 * within 76 characters using soft line breaks.
 */
export function quotedPrintable(data: Buffer): Buffer {
  const out: string[] = []
  const text = data.toString('latin1')
  const lines = text.split('\r\n')
  lines.forEach((line, li) => {
    let cur = ''
    for (let i = 0; i < line.length; i++) {
      const code = line.charCodeAt(i)
      const last = i === line.length - 1
      let tok: string
      if ((code >= 33 && code <= 126 && code !== 61) || ((code === 32 || code === 9) && !last)) tok = line[i]!
      else tok = `=${code.toString(16).toUpperCase().padStart(2, '0')}`
      if (cur.length + tok.length > 75) {
        out.push(`${cur}=\r\n`)
        cur = ''
      }
      cur += tok
    }
    out.push(li < lines.length - 1 ? `${cur}\r\n` : cur)
  })
  return Buffer.from(out.join(''), 'latin1')
}

/**
 * Quoted-printable decoding (RFC 2045 §6.7) in one pass over the bytes, as
 * Python's binascii.a2b_qp reads it (the differential tests' judge): `=XX`
 * becomes its byte, `=` before a line break is a soft break, `==` is `=`, a
 * `=` that starts nothing is kept, a `=` at the very end dropped, and
 * whitespace is kept as it is. Linear in the input.
 */
export function decodeQuotedPrintable(data: Buffer): Buffer {
  const out = Buffer.allocUnsafe(data.length)
  let n = 0
  let i = 0
  const len = data.length
  while (i < len) {
    const b = data[i]!
    if (b !== 0x3d) {
      out[n++] = b
      i++
      continue
    }
    const next = data[i + 1]
    if (next === undefined) break
    if (next === 0x0d || next === 0x0a) {
      // A soft line break: everything up to and including the LF goes.
      const lf = data.indexOf(0x0a, i + 1)
      i = lf < 0 ? len : lf + 1
    } else if (next === 0x3d) {
      out[n++] = 0x3d
      i += 2
    } else {
      const h1 = hex(next)
      const h2 = hex(data[i + 2])
      if (h1 >= 0 && h2 >= 0) {
        out[n++] = (h1 << 4) | h2
        i += 3
      } else {
        out[n++] = 0x3d
        i++
      }
    }
  }
  return out.subarray(0, n)
}

function hex(b: number | undefined): number {
  if (b === undefined) return -1
  if (b >= 0x30 && b <= 0x39) return b - 0x30
  if (b >= 0x41 && b <= 0x46) return b - 0x37
  if (b >= 0x61 && b <= 0x66) return b - 0x57
  return -1
}

/** Why a base64 body is not one that every reader decodes the same way, or undefined when it is. */
export function base64Problem(data: Buffer): string | undefined {
  // Readers disagree about characters outside the alphabet (skipped, or the end of the data)
  // and about data after padding (a second stream, or ignored): a body with either could
  // decode to one PDF for one reader and another for the next. The scans are native (one
  // character class, no repetition to backtrack): a 30 MB attachment is checked in milliseconds.
  const text = data.toString('latin1')
  const bad = OUTSIDE_BASE64.exec(text)
  if (bad) return `a character outside the base64 alphabet at byte ${bad.index}`
  const pad = text.indexOf('=')
  let padding = 0
  if (pad >= 0) {
    const tail = text.slice(pad)
    const after = NOT_PADDING.exec(tail)
    if (after) return `base64 data after padding at byte ${pad + after.index}`
    padding = tail.length - (tail.match(WHITESPACE)?.length ?? 0)
  }
  const symbols = text.length - (text.match(WHITESPACE)?.length ?? 0)
  if (symbols % 4 !== 0) return 'base64 data whose length is not a multiple of four'
  // A last group of one character holds no whole byte, and padding is one or two "=": readers
  // disagree about anything else (some drop it, some refuse the part).
  if ((symbols - padding) % 4 === 1 || padding > 2) return 'base64 padding that no encoder writes'
  return undefined
}

const OUTSIDE_BASE64 = /[^A-Za-z0-9+/=\r\n \t]/
const NOT_PADDING = /[^=\r\n \t]/
const WHITESPACE = /[\r\n \t]/g

/** True when every byte is 7-bit, there is no NUL and no line exceeds 998 characters (RFC 5322 §2.1.1). */
export function isSevenBitSafe(data: Buffer): boolean {
  // Native scans (isAscii, indexOf) rather than a JS byte loop: this runs on every part of every statement.
  if (!isAscii(data) || data.indexOf(0) !== -1) return false
  let lineStart = 0
  for (let i = data.indexOf(0x0a); i !== -1; i = data.indexOf(0x0a, i + 1)) {
    if (i - lineStart > 999) return false
    lineStart = i + 1
  }
  return data.length - lineStart <= 998
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
