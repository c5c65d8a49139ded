import { isAscii } from 'node:buffer'

/** Transfer encodings for re-encoding 8-bit content to 7-bit (RFC 2045 §6.7, §6.8). */

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

export function decodeQuotedPrintable(data: Buffer): Buffer {
  const text = data.toString('latin1').replace(/[ \t]+\r\n/g, '\r\n').replace(/=\r\n/g, '')
  const bytes: number[] = []
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!
    const hex = c === '=' ? text.slice(i + 1, i + 3) : ''
    if (c === '=' && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16))
      i += 2
    } else bytes.push(text.charCodeAt(i) & 0xff)
  }
  return Buffer.from(bytes)
}

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
