import { channel } from 'node:diagnostics_channel'
/**
 * Header fields (RFC 5322 §2.2): one strict reader for the whole box — the
 * MIME tree reads every entity's header with it, signing reads the message's
 * own fields with it (byte for byte), and the errors it refuses hostile
 * input with are MIME's errors (see tree.ts for the whole list).
 */
export type MimeErrorCode = 'EMESSAGE_MALFORMED' | 'EMESSAGE_AMBIGUOUS' | 'EMESSAGE_LINE_TOO_LONG'

export class MimeError extends Error {
  override name = 'MimeError'
  readonly code: MimeErrorCode
  constructor(code: MimeErrorCode, message: string) {
    super(message)
    this.code = code
  }
}

/** RFC 5322 §2.1.1: a line is at most 998 octets, CRLF excluded. */
export const MAX_LINE = 998

export const ambiguous = (why: string) => new MimeError('EMESSAGE_AMBIGUOUS', why)

export interface HeaderField {
  /** Field name as written. */
  name: string
  /** Lower-cased name for lookups. */
  key: string
  /** Offsets of the whole field in the message, from its name to its terminating CRLF (included). */
  start: number
  end: number
  /** Unfolded value (UTF-8), without the whitespace after the colon. */
  value: string
}

/** Every reading of a top header is told here (#34: none at notice time; tests count them). */
export const HEADER_CHANNEL = channel('statement-gateway:mime.read-header')

/** A message's top header fields with their bytes as written (folding kept), and its body. */
export interface RawHeader {
  headers: (HeaderField & { raw: Buffer })[]
  body: Buffer
}

/**
 * The top header of a message, field by field as sent, and the body — for
 * signing, which must keep header fields byte for byte and hash the body as
 * it is. As strict as `parseMessage` about the header; the body is not read.
 * Lines must end in CRLF.
 */
export function readHeader(buf: Buffer): RawHeader {
  if (HEADER_CHANNEL.hasSubscribers) HEADER_CHANNEL.publish({ bytes: buf.length })
  const { headers, bodyStart } = parseHeaders(buf, 0, buf.length)
  return { headers: headers.map((h) => ({ ...h, raw: buf.subarray(h.start, h.end) })), body: buf.subarray(bodyStart) }
}

/**
 * Header fields of the entity at [start, end) and where its body starts.
 * Each physical line is at most 998 octets; a line that is neither a field
 * nor a continuation is refused, not skipped.
 */
export function parseHeaders(buf: Buffer, start: number, end: number): { headers: HeaderField[]; bodyStart: number } {
  const headers: HeaderField[] = []
  let pos = start
  let current: { name: string; start: number; valueStart: number } | undefined
  const close = (upTo: number) => {
    if (!current) return
    const raw = buf.subarray(current.valueStart, upTo).toString('utf8')
    headers.push({ name: current.name, key: current.name.toLowerCase(), start: current.start, end: upTo, value: unfold(raw) })
    current = undefined
  }
  while (pos < end) {
    const eol = buf.indexOf(0x0a, pos)
    const lineEnd = eol < 0 || eol >= end ? end : eol - 1 // index of the CR (or end)
    const next = eol < 0 || eol >= end ? end : eol + 1
    if (lineEnd - pos > MAX_LINE) throw new MimeError('EMESSAGE_LINE_TOO_LONG', `a header line of ${lineEnd - pos} octets (RFC 5322 allows 998)`)
    if (lineEnd === pos) {
      close(pos)
      return { headers, bodyStart: next }
    }
    const first = buf[pos]!
    if (first === 0x20 || first === 0x09) {
      if (!current) throw ambiguous('the header starts with a continuation line')
    } else {
      close(pos)
      const colon = buf.indexOf(0x3a, pos)
      if (colon < 0 || colon >= lineEnd || colon === pos)
        throw ambiguous(`a header line that is not a field ("${buf.subarray(pos, Math.min(lineEnd, pos + 40)).toString('latin1')}")`)
      for (let k = pos; k < colon; k++) {
        const b = buf[k]!
        if (b < 0x21 || b > 0x7e)
          throw ambiguous(
            `a header field name with ${b === 0x20 || b === 0x09 ? 'whitespace' : 'a non-ASCII byte'} ` +
              `("${buf.subarray(pos, Math.min(colon, pos + 40)).toString('latin1')}")`,
          )
      }
      current = { name: buf.subarray(pos, colon).toString('latin1'), start: pos, valueStart: colon + 1 }
    }
    pos = next
  }
  close(end)
  return { headers, bodyStart: end }
}

/** Folding removed (RFC 5322 §2.2.3), leading and trailing whitespace trimmed. */
export function unfold(value: string): string {
  let out = ''
  let from = 0
  for (let i = value.indexOf('\r\n'); i >= 0; i = value.indexOf('\r\n', from)) {
    out += value.slice(from, i)
    from = i + 2
  }
  return (out + value.slice(from)).trim()
}

/** The first field named `key` (lower case), or undefined. */
export function field(node: { readonly headers: readonly HeaderField[] }, key: string): string | undefined {
  return node.headers.find((h) => h.key === key)?.value
}
