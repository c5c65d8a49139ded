import { decodeQuotedPrintable } from '../mime/encode.ts'
import { contentType, header, parseEntity, parseParams, splitMultipart, type Entity } from '../mime/entity.ts'
import { decodeCharset, decodeWords } from '../mime/words.ts'

/** What the policy rules look at, taken from a message without keeping copies of its parts. */
export interface Inspection {
  subject: string
  fromHeader: string | undefined
  statementClass: string | undefined
  /** The firm's own id for the statement (X-Statement-ID), for the audit trail and reports. */
  statementId: string | undefined
  /** Decoded text of text/plain and text/html parts, one entry per part. */
  texts: string[]
  attachments: { filename: string; mime: string; content: Buffer }[]
}

export class MalformedMessage extends Error {
  override name = 'MalformedMessage'
}

const MAX_DEPTH = 16
const MAX_PARTS = 500

/** The firm's statement class and id from the top-level headers (X-Statement-Class, X-Statement-ID). */
export function statementTags(top: Entity): { statementClass: string | undefined; statementId: string | undefined } {
  return {
    statementClass: header(top, 'x-statement-class')?.trim().toLowerCase(),
    statementId: header(top, 'x-statement-id')?.trim().slice(0, 128) || undefined,
  }
}

/**
 * Walks the MIME tree (bounded depth and part count), decoding only what the
 * rules need: the subject, text parts, and attachments one at a time.
 * Multipart bodies are sliced, not copied. Malformed structure throws.
 */
export function inspect(message: Buffer, onAttachment?: (a: Inspection['attachments'][number]) => void): Inspection {
  const top = parseEntity(message)
  const result: Inspection = {
    subject: decodeWords(header(top, 'subject') ?? ''),
    fromHeader: header(top, 'from'),
    ...statementTags(top),
    texts: [],
    attachments: [],
  }
  let parts = 0
  const walk = (bytes: Buffer, depth: number) => {
    if (depth > MAX_DEPTH) throw new MalformedMessage(`MIME nesting deeper than ${MAX_DEPTH}`)
    if (++parts > MAX_PARTS) throw new MalformedMessage(`more than ${MAX_PARTS} MIME parts`)
    const entity = depth === 0 ? top : parseEntity(bytes)
    const ct = contentType(header(entity, 'content-type'))
    if (ct.type === 'multipart') {
      if (!ct.params.boundary) throw new MalformedMessage('multipart without a boundary')
      const split = splitMultipart(entity.body, ct.params.boundary)
      if (!split) throw new MalformedMessage(`multipart body with boundary "${ct.params.boundary}" is not terminated`)
      for (const p of split.parts) walk(p.bytes, depth + 1)
      return
    }
    if (ct.mime === 'message/rfc822') return walk(entity.body, depth + 1)
    const disposition = parseParams(header(entity, 'content-disposition') ?? '')
    const filename = decodeWords(disposition.params.filename ?? ct.params.name ?? '')
    const content = decodeTransfer(entity.body, header(entity, 'content-transfer-encoding'))
    const isAttachment = disposition.value.toLowerCase() === 'attachment' || filename !== '' || (ct.type !== 'text' && depth > 0)
    if (!isAttachment && ct.type === 'text') {
      const text = decodeCharset(content, ct.params.charset)
      result.texts.push(ct.subtype === 'html' ? text.replace(/<[^>]*>/g, ' ').replace(/&nbsp;/g, ' ') : text)
    } else {
      const a = { filename, mime: ct.mime, content }
      if (onAttachment) onAttachment(a)
      else result.attachments.push(a)
    }
  }
  walk(message, 0)
  return result
}

function decodeTransfer(body: Buffer, cte: string | undefined): Buffer {
  const enc = (cte ?? '7bit').trim().toLowerCase()
  if (enc === 'base64') return Buffer.from(body.toString('latin1'), 'base64')
  if (enc === 'quoted-printable') return decodeQuotedPrintable(body)
  return body
}
