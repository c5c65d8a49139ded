import { base64Lines, decodeQuotedPrintable, isSevenBitSafe, quotedPrintable, toCrlf } from '../mime/encode.ts'
import { readHeader } from '../mime/header.ts'
import { type MimeNode } from '../mime/tree.ts'

/** Header fields that describe the content, and so move into the signed body part (RFC 8551 §3.1). */
export const CONTENT_HEADERS = new Set([
  'content-type',
  'content-transfer-encoding',
  'content-disposition',
  'content-id',
  'content-description',
  'content-language',
  'content-location',
])

/**
 * The message with every leaf made 7-bit safe before it is signed (RFC 8551
 * §3.1.2; RFC 5322 §2.1.1): a leaf with 8-bit or binary content, or a line
 * over 998 octets, is re-encoded — text as quoted-printable, anything else as
 * base64 — so no relay has to re-encode it after signing (which breaks both
 * signatures) and no receiving server refuses a long line after our 250. The
 * content a reader decodes is unchanged. Everything else — header fields,
 * boundaries, preambles, parts already 7-bit — stays byte for byte; the
 * structure comes from the one reading done at submission (`tree`).
 *
 * (Long body lines are re-encoded rather than refused: statement generators
 * write HTML on one long line, and the reader sees the same statement.)
 */
export function sevenBitMessage(buf: Buffer, tree: MimeNode): Buffer {
  const r = rebuild(buf, tree)
  return r ? Buffer.concat(r) : buf
}

/** The node's bytes with its leaves made 7-bit safe, or undefined when nothing had to change. */
function rebuild(buf: Buffer, node: MimeNode): Buffer[] | undefined {
  if (node.children.length === 0) return leaf(buf, node)
  const out: Buffer[] = []
  let pos = node.start
  let changed = false
  for (const child of node.children) {
    out.push(buf.subarray(pos, child.start))
    const c = rebuild(buf, child)
    if (c) changed = true
    out.push(...(c ?? [buf.subarray(child.start, child.end)]))
    pos = child.end
  }
  out.push(buf.subarray(pos, node.end))
  return changed ? out : undefined
}

function leaf(buf: Buffer, node: MimeNode): Buffer[] | undefined {
  const body = buf.subarray(node.bodyStart, node.end)
  if (isSevenBitSafe(body) && node.cte !== 'binary') return undefined
  const raw = node.cte === 'quoted-printable' ? decodeQuotedPrintable(body) : node.cte === 'base64' ? Buffer.from(body.toString('latin1'), 'base64') : body
  const textual = node.mime.startsWith('text/')
  const encoded = textual ? quotedPrintable(toCrlf(raw)) : base64Lines(raw)
  const headers = node.headers.filter((h) => h.key !== 'content-transfer-encoding').map((h) => buf.subarray(h.start, h.end))
  return [...headers, Buffer.from(`Content-Transfer-Encoding: ${textual ? 'quoted-printable' : 'base64'}\r\n\r\n`), encoded]
}

/**
 * Splits a message into the fields that stay outside the signature (From, To,
 * Subject, Date, Message-ID…, preserved byte for byte) and the body entity
 * that gets signed: the Content-* fields plus the body. The message must be
 * CRLF-terminated and already 7-bit safe (`sevenBitMessage`).
 */
export function splitForSigning(message: Buffer): { outer: Buffer[]; entity: Buffer[] } {
  const m = readHeader(message)
  const outer = m.headers.filter((h) => !CONTENT_HEADERS.has(h.key) && h.key !== 'mime-version').map((h) => h.raw)
  let content = m.headers.filter((h) => CONTENT_HEADERS.has(h.key)).map((h) => h.raw)
  if (!content.some((h) => /^content-type\s*:/i.test(h.toString('latin1')))) {
    content = [Buffer.from('Content-Type: text/plain; charset=us-ascii\r\n'), ...content]
  }
  // The entity as pieces of the message: hashed and written out without a copy of the body.
  return { outer, entity: [...content, Buffer.from('\r\n'), m.body] }
}
