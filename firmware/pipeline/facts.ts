import addressparser from 'nodemailer/lib/addressparser'
import { field, MimeError, parseMessage, type MimeNode } from '../mime/tree.ts'
import type { Envelope } from './handoff.ts'

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
  /** Size of the message the tree was read from: the tree's offsets hold for exactly these bytes. */
  bytes: number
  /** The MIME structure as read (byte ranges of the message, header values, types, file names). */
  tree: MimeNode
}

export const domainOf = (address: string) => address.slice(address.lastIndexOf('@') + 1).toLowerCase()

/** The facts later stages need, from the parsed message. */
export function factsOf(buf: Buffer, top: MimeNode): MessageFacts {
  const from = fromMailbox(field(top, 'from'))
  const tag = (key: string, max: number) => field(top, key)?.replace(/[\x00-\x1f\x7f]/g, '').trim().slice(0, max) || undefined
  return {
    from,
    fromDomain: from ? domainOf(from) : undefined,
    statementId: tag('x-statement-id', 128),
    statementClass: tag('x-statement-class', 32)?.toLowerCase(),
    batch: tag('x-statement-batch', 64),
    bytes: buf.length,
    tree: top,
  }
}

/**
 * The firm's statement id, class and batch of a spooled mail: as read at
 * submission, or — for a record spooled by firmware that did not yet carry
 * them — read from the message now, so a notice after an update still names
 * the statement (M8).
 */
export function statementTagsOf(mail: { envelope: Envelope; message: Buffer }): { statementId: string | undefined; statementClass: string | undefined; batch: string | undefined } {
  const e = mail.envelope
  if (e.tagged) return { statementId: e.statementId, statementClass: e.statementClass, batch: e.batch }
  try {
    const { statementId, statementClass, batch } = factsOf(mail.message, parseMessage(mail.message))
    return { statementId, statementClass, batch }
  } catch {
    return { statementId: undefined, statementClass: undefined, batch: undefined }
  }
}

/**
 * The one mailbox of a From field, lower case. A From that names more than
 * one mailbox is refused as ambiguous: readers show one, DMARC checks another.
 */
export function fromMailbox(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  if (atSigns(value) > 1) throw new MimeError('EMESSAGE_AMBIGUOUS', 'the From field names more than one mailbox')
  const found = addressparser(value, { flatten: true }).filter((a) => a.address)
  if (found.length > 1) throw new MimeError('EMESSAGE_AMBIGUOUS', 'the From field names more than one mailbox')
  return found[0]?.address.toLowerCase() || undefined
}

/** "@" signs outside quoted strings and comments (one pass). */
function atSigns(value: string): number {
  let n = 0
  let quoted = false
  let comment = 0
  for (let i = 0; i < value.length; i++) {
    const c = value[i]
    if (c === '\\') i++
    else if (quoted) quoted = c !== '"'
    else if (c === '"') quoted = true
    else if (c === '(') comment++
    else if (c === ')' && comment > 0) comment--
    else if (c === '@' && comment === 0) n++
  }
  return n
}
