import { domainOf, fromMailbox } from '../mime/address.ts'
import { field } from '../mime/header.ts'
import { parseMessage, type MimeNode } from '../mime/tree.ts'

/**
 * What the box knows about a mail after reading it once (parse once, carry
 * facts): the later stages — policy, signing, the spool, delivery's notices,
 * the control socket — use these instead of parsing the message again.
 */
export interface MessageFacts {
  /** The one From mailbox, lower case; undefined when there is none. */
  from: string | undefined
  fromDomain: string | undefined
  /** The firm's own statement id (X-Statement-ID), class (X-Statement-Class) and batch (X-Statement-Batch). */
  statementId: string | undefined
  statementClass: string | undefined
  batch: string | undefined
  /** Auto-Submitted (RFC 3834), lower case, when present: anything but "no" marks an automatic mail (M8's loop guard). */
  autoSubmitted: string | undefined
  /** Whether the message is a report (multipart/report, RFC 6522): a DSN or MDN gets no notice of its own. */
  isReport: boolean
  /** Size of the message the tree was read from: the tree's offsets hold for exactly these bytes. */
  bytes: number
  /** The MIME structure as read (byte ranges of the message, header values, types, file names). */
  tree: MimeNode
}

/** The facts later stages need, from the parsed message. */
export function factsOf(buf: Buffer, top: MimeNode): MessageFacts {
  const from = fromMailbox(field(top, 'from'))
  const tag = (key: string, max: number) =>
    field(top, key)
      ?.replace(/[\x00-\x1f\x7f]/g, '')
      .trim()
      .slice(0, max) || undefined
  return {
    from,
    fromDomain: from ? domainOf(from) : undefined,
    statementId: tag('x-statement-id', 128),
    statementClass: tag('x-statement-class', 32)?.toLowerCase(),
    batch: tag('x-statement-batch', 64),
    autoSubmitted: tag('auto-submitted', 64)?.toLowerCase(),
    isReport: top.mime === 'multipart/report',
    bytes: buf.length,
    tree: top,
  }
}

/** The firm's own tags as an envelope carries them (see Envelope). */
export interface StatementTags {
  readonly statementId?: string | undefined
  readonly statementClass?: string | undefined
  readonly batch?: string | undefined
  /** True when the three were read at submission (an absent id is then really absent). */
  readonly tagged?: boolean
  /** Auto-Submitted and whether it is a report, as read at submission (M8's loop guards); absent in older records. */
  readonly autoSubmitted?: string | undefined
  readonly isReport?: boolean
}

/**
 * The firm's statement id, class and batch of a spooled mail: as read at
 * submission, or — for a record spooled by firmware that did not yet carry
 * them — read from the message now, so a notice after an update still names
 * the statement (M8).
 */
export function statementTagsOf(mail: { envelope: StatementTags; message: Buffer }): {
  statementId: string | undefined
  statementClass: string | undefined
  batch: string | undefined
} {
  const e = mail.envelope
  if (e.tagged) return { statementId: e.statementId, statementClass: e.statementClass, batch: e.batch }
  try {
    const { statementId, statementClass, batch } = factsOf(mail.message, parseMessage(mail.message))
    return { statementId, statementClass, batch }
  } catch {
    return { statementId: undefined, statementClass: undefined, batch: undefined }
  }
}
