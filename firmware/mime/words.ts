import { decodeQuotedPrintable } from './encode.ts'

/**
 * Text in MIME headers and parts, decoded as a reader shows it: charsets,
 * RFC 2047 encoded words, RFC 2231 parameter values, and UTF-7. Every function
 * here reads hostile input and is linear in it (scanners, no backtracking).
 */

/** Decodes bytes in a MIME charset (utf-8, big5, gb2312, iso-8859-1, utf-7 …); unknown charsets as UTF-8. */
export function decodeCharset(bytes: Buffer, charset: string | undefined): string {
  const name = (charset ?? 'utf-8').toLowerCase().trim()
  if (name === 'utf-7' || name === 'unicode-1-1-utf-7' || name === 'csunicode11utf7') return decodeUtf7(bytes.toString('latin1'))
  try {
    return new TextDecoder(name, { fatal: false }).decode(bytes)
  } catch {
    return new TextDecoder('utf-8').decode(bytes)
  }
}

/** The longest encoded word looked at; RFC 2047 §2 allows 75 characters; lax writers go a little over. */
const MAX_WORD = 200

interface Word {
  start: number
  end: number
  charset: string
  bytes: Buffer
  /** For a B word: its base64 text, which may end mid-quantum (a writer split a character across words). */
  base64?: string
}

/** The encoded word `=?charset?B|Q?text?=` starting at `at`, or undefined. Bounded work: at most MAX_WORD characters. */
function wordAt(value: string, at: number): Word | undefined {
  // Searches stay within the word's longest possible extent: searching the rest of the value
  // for every "=?" would make a value full of unclosed words quadratic.
  const w = value.slice(at, at + MAX_WORD)
  const q1 = w.indexOf('?', 2)
  if (q1 < 0 || q1 === 2) return undefined
  const enc = w[q1 + 1]
  if (w[q1 + 2] !== '?' || (enc !== 'B' && enc !== 'b' && enc !== 'Q' && enc !== 'q')) return undefined
  const close = w.indexOf('?=', q1 + 3)
  if (close < 0) return undefined
  let charset = w.slice(2, q1)
  const text = w.slice(q1 + 3, close)
  for (let i = 0; i < charset.length; i++) if (charset.charCodeAt(i) <= 0x20) return undefined
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) <= 0x20) return undefined
  const star = charset.indexOf('*') // RFC 2231 §5: charset*language
  if (star >= 0) charset = charset.slice(0, star)
  const bytes = enc === 'B' || enc === 'b' ? Buffer.from(text, 'base64') : decodeQuotedPrintable(Buffer.from(text.replaceAll('_', ' '), 'latin1'))
  return { start: at, end: at + close + 2, charset: charset.toLowerCase(), bytes, ...(enc === 'B' || enc === 'b' ? { base64: text } : {}) }
}

/**
 * The bytes of a run of adjacent words in one charset. A B word that ends mid-quantum (its
 * text not a multiple of 4, no padding) continues in the next word's text, as libmime reads
 * it: `=?UTF-8?B?5p?= =?UTF-8?B?yJ?=` is 5pyJ, the three bytes of 有. A padded word ends its bytes.
 */
function runBytes(words: readonly Word[]): Buffer {
  const out: Buffer[] = []
  let pending = ''
  for (const w of words) {
    if (w.base64 === undefined) {
      if (pending) out.push(Buffer.from(pending, 'base64'))
      pending = ''
      out.push(w.bytes)
      continue
    }
    const padded = w.base64.includes('=')
    const text = pending + (padded ? w.base64.slice(0, w.base64.indexOf('=')) : w.base64)
    if (padded || text.length % 4 === 0) {
      out.push(Buffer.from(text, 'base64'))
      pending = ''
    } else pending = text
  }
  if (pending) out.push(Buffer.from(pending, 'base64'))
  return Buffer.concat(out)
}

/**
 * RFC 2047 encoded words in a header value. Whitespace between two encoded
 * words is dropped (§6.2), and adjacent words in the same charset are joined
 * before decoding (a B word cut mid-quantum continues in the next one, see
 * runBytes): mailers split a multi-byte character across two words although
 * the RFC says not to, and decoding each word alone would turn the label
 * 有價證券月對帳單 into replacement characters.
 */
export function decodeWords(value: string): string {
  if (!value.includes('=?')) return value
  const out: string[] = []
  let pos = 0
  let run: { charset: string; words: Word[] } | undefined
  let gap = '' // whitespace after the last encoded word, kept unless another word follows
  const flush = () => {
    if (run) out.push(decodeCharset(runBytes(run.words), run.charset))
    run = undefined
  }
  for (let at = value.indexOf('=?'); at >= 0; at = value.indexOf('=?', at)) {
    const w = wordAt(value, at)
    if (!w) {
      at += 2
      continue
    }
    const between = value.slice(pos, at)
    const onlySpace = run !== undefined && isWhitespace(between)
    if (!onlySpace) {
      flush()
      out.push(gap, between)
    }
    gap = ''
    if (run && run.charset === w.charset) run.words.push(w)
    else {
      flush()
      run = { charset: w.charset, words: [w] }
    }
    pos = at = w.end
  }
  flush()
  out.push(value.slice(pos))
  return out.join('')
}

function isWhitespace(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d && c !== 0x0a) return false
  }
  return true
}

/** An RFC 2231 extended value `charset'language'percent-encoded` (§4), decoded. */
export function decodeRfc2231(value: string): string {
  const q1 = value.indexOf("'")
  const q2 = q1 < 0 ? -1 : value.indexOf("'", q1 + 1)
  if (q2 < 0) return percentDecode(value).toString('latin1')
  return decodeCharset(percentDecode(value.slice(q2 + 1)), value.slice(0, q1) || 'us-ascii')
}

function percentDecode(text: string): Buffer {
  const out = Buffer.allocUnsafe(text.length)
  let n = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x25 && i + 2 < text.length) {
      const hex = text.slice(i + 1, i + 3)
      if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
        out[n++] = parseInt(hex, 16)
        i += 2
        continue
      }
    }
    out[n++] = c & 0xff
  }
  return out.subarray(0, n)
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

/**
 * UTF-7 (RFC 2152): `+` starts modified base64 of UTF-16BE code units, ended
 * by `-` (dropped) or any other non-base64 character (kept); `+-` is `+`. A
 * declared charset some mail readers still honour, so a national ID written
 * in it must be found like any other.
 */
export function decodeUtf7(text: string): string {
  const out: string[] = []
  let i = 0
  while (i < text.length) {
    const plus = text.indexOf('+', i)
    if (plus < 0) {
      out.push(text.slice(i))
      break
    }
    out.push(text.slice(i, plus))
    let j = plus + 1
    if (text[j] === '-') {
      out.push('+')
      i = j + 1
      continue
    }
    let bits = 0
    let acc = 0
    const units: number[] = []
    for (; j < text.length; j++) {
      const v = B64.indexOf(text[j]!)
      if (v < 0) break
      acc = (acc << 6) | v
      bits += 6
      if (bits >= 16) {
        bits -= 16
        units.push((acc >> bits) & 0xffff)
        acc &= (1 << bits) - 1
      }
    }
    for (let k = 0; k < units.length; k += 8192) out.push(String.fromCharCode(...units.slice(k, k + 8192)))
    i = text[j] === '-' ? j + 1 : j
  }
  return out.join('')
}
