/**
 * Scanners over free text that a bounce notice is made of: e-mail addresses,
 * RFC 3463 enhanced status codes and SMTP reply codes. Each is one pass with
 * bounded look-around, no regular expression over the content (the text is
 * the sender's, up to megabytes).
 */

const LOCAL = new Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!#$%&'*+/=?^_`{|}~-")
const DOMAIN = new Set('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-')
const MAX_LOCAL = 64
const MAX_DOMAIN = 253

const isLocal = (c: string) => LOCAL.has(c) || c.charCodeAt(0) > 0x7f
const isDomain = (c: string) => DOMAIN.has(c) || (c.charCodeAt(0) > 0x7f && c.trim() !== '' && c !== '\u3000' && c !== '\uff1a')

export interface Found {
  value: string
  at: number
}

/** The e-mail addresses in `text`, in order, with where each starts. */
export function addressesIn(text: string): Found[] {
  const out: Found[] = []
  let from = 0
  for (;;) {
    const at = text.indexOf('@', from)
    if (at < 0) break
    from = at + 1
    let s = at
    while (s > 0 && at - s < MAX_LOCAL && isLocal(text[s - 1]!)) s--
    let e = at + 1
    while (e < text.length && e - at <= MAX_DOMAIN && isDomain(text[e]!)) e++
    while (s < at && (text[s] === '.' || text[s] === "'" || text[s] === '`')) s++
    while (e > at + 1 && (text[e - 1] === '.' || text[e - 1] === '-')) e--
    const domain = text.slice(at + 1, e)
    if (s === at || !domain.includes('.') || domain.startsWith('.')) continue
    out.push({ value: text.slice(s, e), at: s })
    from = e
  }
  return out
}

const isDigit = (c: number) => c >= 0x30 && c <= 0x39

/** RFC 3463 codes (`5.1.1`, `4.7.26`) in `text`, in order. Class 2, 4 or 5; subject and detail 1–3 digits. */
export function statusesIn(text: string, limit = Infinity): Found[] {
  const out: Found[] = []
  let from = 0
  while (out.length < limit) {
    const dot = text.indexOf('.', from)
    if (dot < 0) break
    from = dot + 1
    const i = dot - 1
    const c = text.charCodeAt(i)
    if (i < 0 || (c !== 0x32 && c !== 0x34 && c !== 0x35)) continue
    if (i > 0 && (isDigit(text.charCodeAt(i - 1)) || text[i - 1] === '.')) continue
    let j = dot + 1
    const subject = j
    while (j < text.length && j - subject < 3 && isDigit(text.charCodeAt(j))) j++
    if (j === subject || text[j] !== '.') continue
    const detail = ++j
    while (j < text.length && j - detail < 3 && isDigit(text.charCodeAt(j))) j++
    if (j === detail || (j < text.length && (isDigit(text.charCodeAt(j)) || (text[j] === '.' && isDigit(text.charCodeAt(j + 1)))))) continue
    out.push({ value: text.slice(i, j), at: i })
    from = j
  }
  return out
}

/** The first RFC 3463 code in `text`, or ''. */
export const firstStatus = (text: string) => statusesIn(text, 1)[0]?.value ?? ''

/**
 * The SMTP reply code of a failure in `text`: a three-digit 4xx/5xx token that
 * stands alone (not part of a longer number, a date or a version) and is
 * followed by a space, a hyphen, a comma or a bracket — `550 5.1.1 …`, `said: 554-…`.
 */
export function replyCodeIn(text: string): string {
  for (let i = 0; i + 2 < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c !== 0x34 && c !== 0x35) continue
    // RFC 5321 4.2: the second digit is 0–5.
    const second = text.charCodeAt(i + 1)
    if (second < 0x30 || second > 0x35 || !isDigit(text.charCodeAt(i + 2))) continue
    const before = i > 0 ? text[i - 1]! : ' '
    const after = text[i + 3] ?? ' '
    if (!' \t\n(["#:'.includes(before) || !' -\n\r,)]'.includes(after)) continue
    if (after === ' ' && /\d/.test(text[i + 4] ?? '') && !text.slice(i + 4, i + 12).includes('.')) continue
    return text.slice(i, i + 3)
  }
  return ''
}

/** Lower case with every run of white space as one space: what the classifier's phrases are matched against. */
export function normalise(text: string): string {
  let out = ''
  let space = false
  for (const ch of text.toLowerCase()) {
    if (ch === ' ' || ch === '\n' || ch === '\r' || ch === '\t' || ch === '\u00a0') {
      space = out.length > 0
      continue
    }
    if (space) out += ' '
    space = false
    out += ch
  }
  return out
}

/**
 * Which code describes the failure, when the Status field and the receiver's reply each give one:
 * the one of the reply code's class when they differ in class; the reply's own code when the field
 * is vaguer (`5.0.0`, `5.1.0`) or is X.4.7, which RFC 3463 3.5 asks to be used only when "the code
 * for the actual problem found when delivery was attempted" cannot be given; otherwise the field.
 */
export function preferredStatus(field: string, diagnostic: string, reply = ''): string {
  if (!field || field === diagnostic) return field || diagnostic
  if (!diagnostic) return field
  if (field[0] !== diagnostic[0] && reply) {
    if (reply[0] === diagnostic[0]) return diagnostic
    if (reply[0] === field[0]) return field
  }
  const [, fieldSubject, fieldDetail] = field.split('.')
  const [, subject, detail] = diagnostic.split('.')
  if (fieldSubject === '0' && fieldDetail === '0') return subject === '0' && detail === '0' ? field : diagnostic
  if (fieldDetail === '0' && detail !== '0' && subject !== '0') return diagnostic
  if (fieldSubject === '4' && fieldDetail === '7') return diagnostic
  return field
}
