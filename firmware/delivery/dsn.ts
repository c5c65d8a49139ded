import MimeNode from 'nodemailer/lib/mime-node'
import { maskAddress } from '../log.ts'
import { rfc5322Date } from '../mime/date.ts'

/** Longest field value in the delivery-status part: with its name, well within a line's 998 octets. */
const MAX_VALUE = 900

/** Why the firm hears of a mail: a receiver refused it, it ran out of time, or an operator took it out of the queue. */
export type DsnReason = 'bounced' | 'expired' | 'removed'

/** One recipient the notice is about. */
export interface FailedRecipient {
  rcpt: string
  /** Why, in words (the receiver's reply during delivery, or the box's reason). */
  reason: string
  /** What the receiver said, when a report came back (#30): its per-recipient status and its words with their codes (redacted). */
  status?: string
  diagnostic?: string
  /** The box's reading of it: the category and whether the address will never work. */
  category?: string
  hard?: boolean
}

export interface DsnFacts {
  /** The box's name (Reporting-MTA, MAILER-DAEMON@, Message-ID). */
  host: string
  /** The firm's notice address (`delivery.notifyAddress`). */
  to: string
  queueId: string
  /** The firm's own id for the statement (X-Statement-ID), if it gave one. */
  statementId: string | undefined
  /** The archive copy (M7) rather than the customer's mail. */
  auditCopy: boolean
  what: DsnReason
  failed: readonly FailedRecipient[]
  arrivedAt: number
  now: number
  messageId: string
}

/**
 * M8: the notice to the firm that a statement (or its archive copy) was not
 * delivered — a delivery status notification (RFC 3464) built with
 * nodemailer's MIME builder, as zone-mta builds its bounces. It carries the
 * queue id and the firm's statement id, so the firm's system can tell which
 * customer is owed a paper statement, and never the statement's content.
 */
export function buildDsn(f: DsnFacts): Promise<Buffer> {
  // The firm's id goes into header fields and the status block: printable ASCII only.
  const statementId = f.statementId?.replace(/[^\x21-\x7e]/g, '?')
  const rcpts = f.failed.map((x) => x.rcpt)
  const reasons = [...new Set(f.failed.map((x) => (x.category ? `${x.reason} (${x.category}, ${x.hard ? 'hard' : 'soft'})` : x.reason)))].join('; ')
  const subject = `${f.auditCopy ? 'The archive copy of statement' : 'Statement'} ${f.queueId}`
  const consequence = f.auditCopy
    ? "The customer's own delivery is tracked separately; the archive (M7) lacks this copy."
    : 'A paper statement may be owed (M8).'

  const root = new MimeNode('multipart/report; report-type=delivery-status', { newline: '\r\n', hostname: f.host })
  root.setHeader({
    From: { name: 'Mail Delivery System', address: `MAILER-DAEMON@${f.host}` },
    To: f.to,
    Subject: `Undelivered ${f.auditCopy ? 'archive copy' : 'statement'} ${statementId ?? f.queueId} (${f.what})`,
    Date: rfc5322Date(f.now),
    'Message-ID': `<${f.messageId}@${f.host}>`,
    'Auto-Submitted': 'auto-replied',
    ...(statementId ? { 'X-Statement-ID': statementId } : {}),
  })
  const text = [
    `${subject} to ${rcpts.map(maskAddress).join(', ')} was not delivered (${f.what}).`,
    ...(statementId ? [`Statement ID: ${statementId}`] : []),
    consequence,
    `Reason: ${reasons}`,
  ]
  root.createChild('text/plain; charset=utf-8').setContent(`${text.join('\r\n')}\r\n`)

  // message/delivery-status is 7bit text of header-like fields (RFC 3464 §2.1) with the
  // 998-octet line limit; a receiver's reply can be longer (4 KB lines) and is cut short.
  // Anything but printable ASCII (an SMTPUTF8 reply, a control character) becomes "?".
  const field = (name: string, value: string) => {
    const ascii = value.replace(/[^\x20-\x7e]/g, '?')
    return `${name}: ${ascii.length > MAX_VALUE ? `${ascii.slice(0, MAX_VALUE)}...` : ascii}\r\n`
  }
  const perMessage =
    field('Reporting-MTA', `dns; ${f.host}`) +
    field('X-Statement-Gateway-Queue-ID', f.queueId) +
    (statementId ? field('X-Statement-ID', statementId) : '') +
    field('Arrival-Date', rfc5322Date(f.arrivedAt))
  const perRecipient = f.failed.map(
    (r) =>
      field('Final-Recipient', `rfc822; ${r.rcpt}`) +
      field('Action', 'failed') +
      field('Status', r.status && STATUS.test(r.status) ? r.status : statusOf(f.what, r.reason)) +
      field('Diagnostic-Code', `${f.what === 'removed' ? 'x-statement-gateway' : 'smtp'}; ${r.diagnostic || r.reason}`) +
      // RFC 3464 6.3: an extension field for what the box made of it.
      (r.category ? field('X-Statement-Gateway-Category', `${r.category}; ${r.hard ? 'hard' : 'soft'}`) : ''),
  )
  root.createChild('message/delivery-status').setContent([perMessage, ...perRecipient].join('\r\n'))
  return root.build()
}

const STATUS = /^[245]\.\d{1,3}\.\d{1,3}$/

/** The enhanced status code for a recipient: from the receiver's reply, else what the reason implies. */
function statusOf(what: DsnReason, reason: string): string {
  if (what === 'removed') return '5.0.0'
  return /\b([45]\.\d+\.\d+)\b/.exec(reason)?.[1] ?? (what === 'expired' ? '4.4.7' : '5.0.0')
}
