import { base64Lines, decodeQuotedPrintable, isSevenBitSafe, quotedPrintable } from '../mime/encode.ts'
import { contentType, header, parseEntity, splitMultipart, toCrlf, type Entity } from '../mime/entity.ts'

/** Header fields that describe the content, and so move into the signed body part (RFC 8551 §3.1). */
export const CONTENT_HEADERS = new Set(['content-type', 'content-transfer-encoding', 'content-disposition', 'content-id', 'content-description', 'content-language', 'content-location'])

/**
 * Makes a MIME entity 7-bit safe before it is signed (RFC 8551 §3.1.2): a
 * relay that downgrades 8BITMIME would otherwise re-encode it after signing
 * and break the signature. 8-bit or binary leaves are re-encoded, text as
 * quoted-printable and everything else as base64; multiparts are rebuilt with
 * the same boundaries. Parts already 7-bit are left byte for byte.
 */
export function sevenBit(entityBytes: Buffer, depth = 0): Buffer {
  const entity = parseEntity(entityBytes)
  const ct = contentType(header(entity, 'content-type'))
  const cte = (header(entity, 'content-transfer-encoding') ?? '7bit').toLowerCase().trim()
  if (ct.type === 'multipart' && ct.params.boundary && depth < 32) {
    const split = splitMultipart(entity.body, ct.params.boundary)
    if (split) {
      const parts = split.parts.map((p) => sevenBit(p.bytes, depth + 1))
      if (parts.every((p, i) => p === split.parts[i]!.bytes) && isSevenBitSafe(split.preamble) && isSevenBitSafe(split.epilogue)) return entityBytes
      const b = ct.params.boundary
      const body = Buffer.concat([
        isSevenBitSafe(split.preamble) && split.preamble.length ? Buffer.concat([split.preamble, Buffer.from('\r\n')]) : Buffer.alloc(0),
        ...parts.flatMap((p) => [Buffer.from(`--${b}\r\n`), p, Buffer.from('\r\n')]),
        Buffer.from(`--${b}--\r\n`),
      ])
      return Buffer.concat([headerBytes(entity), Buffer.from('\r\n'), body])
    }
  }
  if (isSevenBitSafe(entity.body) && cte !== 'binary') return entityBytes
  const raw = cte === 'quoted-printable' ? decodeQuotedPrintable(entity.body) : cte === 'base64' ? Buffer.from(entity.body.toString('latin1'), 'base64') : entity.body
  const textual = ct.type === 'text'
  const encoded = textual ? quotedPrintable(toCrlf(raw)) : base64Lines(raw)
  const headers = entity.headers.filter((h) => h.key !== 'content-transfer-encoding').map((h) => h.raw)
  headers.push(Buffer.from(`Content-Transfer-Encoding: ${textual ? 'quoted-printable' : 'base64'}\r\n`))
  return Buffer.concat([...headers, Buffer.from('\r\n'), encoded])
}

function headerBytes(entity: Entity): Buffer {
  return Buffer.concat(entity.headers.map((h) => h.raw))
}

/**
 * Splits a message into the fields that stay outside the signature (From, To,
 * Subject, Date, Message-ID…, preserved byte for byte) and the body entity
 * that gets signed: the Content-* fields plus the body. `message` must have
 * CRLF line endings (the signing stage makes sure).
 */
export function splitForSigning(message: Buffer): { outer: Buffer[]; entity: Buffer } {
  const m = parseEntity(message)
  const outer = m.headers.filter((h) => !CONTENT_HEADERS.has(h.key) && h.key !== 'mime-version').map((h) => h.raw)
  let content = m.headers.filter((h) => CONTENT_HEADERS.has(h.key)).map((h) => h.raw)
  if (!content.some((h) => /^content-type\s*:/i.test(h.toString('latin1')))) {
    content = [Buffer.from('Content-Type: text/plain; charset=us-ascii\r\n'), ...content]
  }
  return { outer, entity: sevenBit(Buffer.concat([...content, Buffer.from('\r\n'), m.body])) }
}
