import { createHash } from 'node:crypto'
import type { Clock } from '../../hal/clock.ts'
import type { Config } from '../config/load.ts'
import type { Logger } from '../log.ts'
import { redactText } from '../pii/redact.ts'
import { readHeader, type HeaderField } from '../mime/header.ts'
import { statementTagsOf } from '../pipeline/facts.ts'
import type { Submitted } from '../pipeline/handoff.ts'
import { newQueueId } from '../spool/ids.ts'
import type { Spool } from '../spool/spool.ts'
import { buildDsn, type DsnFacts, type DsnReason, type FailedRecipient } from './dsn.ts'

/** A bounce that came back after the 250, as the return path and the ledger know it (#30: with what the receiver said). */
export interface ReturnedBounce {
  id: string
  statementId: string | undefined
  rcpt: string
  /** The receiver's per-recipient status, and its words with their codes (redacted). */
  status: string
  diagnostic: string
  category: string
  hard: boolean
  arrivedAt: number
}

/**
 * M8: the firm hears of every bounce and expiry (and removal) — a DSN to the
 * configured address (`delivery.notifyAddress`), queued like any mail from the
 * null sender, without the content (dsn.ts).
 */
export class Notices {
  #config: Config
  readonly #log: Logger
  readonly #spool: Spool
  readonly #clock: Clock

  constructor(deps: { config: Config; log: Logger; spool: Spool; clock: Clock }) {
    this.#config = deps.config
    this.#log = deps.log
    this.#spool = deps.spool
    this.#clock = deps.clock
  }
  /** S7: the notice address from a configuration approved on the admin page. */
  reconfigure(config: Config): void {
    this.#config = config
  }

  /** About a mail in the spool: its recipients that bounced, expired or were removed. */
  async forMail(mail: Submitted, what: DsnReason, failed: readonly FailedRecipient[], noticeId = newQueueId()): Promise<void> {
    const to = this.#config.delivery.notifyAddress
    if (!to || mail.envelope.kind === 'dsn' || failed.length === 0) return
    // The usual loop guards (RFC 3834 2, RFC 3464 4): no notice about a mail that is itself automatic.
    const automatic = automaticMail(mail)
    if (automatic) {
      this.#log.info({ id: mail.envelope.id, why: automatic }, 'no delivery notice for an automatic mail')
      return
    }
    await this.#enqueue(
      to,
      {
        queueId: mail.envelope.id,
        statementId: statementTagsOf(mail).statementId,
        auditCopy: mail.envelope.kind === 'audit-copy',
        what,
        failed,
        arrivedAt: mail.envelope.receivedAt,
      },
      noticeId,
    )
  }

  /**
   * A bounce that came back after the 250 (the return path): the same notice as for a refusal
   * during delivery. The statement's record is gone by then, so the facts come from the report
   * and the ledger.
   */
  async returned(f: ReturnedBounce): Promise<void> {
    const to = this.#config.delivery.notifyAddress
    if (!to) return
    await this.#enqueue(to, {
      queueId: f.id,
      statementId: f.statementId,
      auditCopy: false,
      what: 'bounced',
      failed: [{ rcpt: f.rcpt, reason: f.diagnostic || f.status, status: f.status, diagnostic: f.diagnostic, category: f.category, hard: f.hard }],
      arrivedAt: f.arrivedAt,
    })
  }

  /** A notice to the firm, spooled (durable) like any mail, from the null sender. */
  async #enqueue(to: string, facts: Omit<DsnFacts, 'host' | 'to' | 'now' | 'messageId'>, id = newQueueId()): Promise<void> {
    // #30: a receiver's words reach the firm as the trail keeps them: redacted, or only their codes.
    const none = this.#config.returnPath.replyText === 'none'
    const words = (text: string) => (none ? (/\b[245]\d\d\b(?:[ -][245]\.\d+\.\d+)?/.exec(text)?.[0] ?? '') : redactText(text))
    const f = { ...facts, failed: facts.failed.map((r) => ({ ...r, reason: words(r.reason), ...(r.diagnostic ? { diagnostic: words(r.diagnostic) } : {}) })) }
    const message = await buildDsn({ ...f, host: this.#config.submission.hostname, to, now: this.#clock.now(), messageId: newQueueId() })
    await this.#spool.accept({
      envelope: {
        id,
        mailFrom: '',
        rcptTo: [to],
        account: undefined,
        clientAddress: '127.0.0.1',
        tls: undefined,
        receivedAt: this.#clock.now(),
        kind: 'dsn',
      },
      message,
    })
  }
}

/**
 * #33: the queue id of the notice about a mail's bounces in one attempt, derived from the
 * mail's id and the attempt's first bouncing transaction: after a crash the replay finds
 * whether it was queued (a random id would be queued twice).
 */
export function noticeIdFor(mailId: string, transaction: string): string {
  return createHash('sha256').update(`notice\0${mailId}\0${transaction}`).digest().subarray(0, 9).toString('base64url')
}

const SYSTEM_SENDERS = new Set(['mailer-daemon', 'postmaster', 'mail-daemon', 'mailerdaemon'])

/**
 * Why a mail is automatic (so no notice is sent about it), or undefined: a
 * null sender, a mailer-daemon sender, `Auto-Submitted` other than `no`, or a
 * report (`multipart/report`). The last two as read at submission (#34: by
 * now the mail may be `multipart/signed`, whose header says neither); a record
 * spooled before the envelope carried them has its header read here.
 */
export function automaticMail(mail: Submitted): string | undefined {
  const from = mail.envelope.mailFrom
  if (from === '') return 'null sender'
  if (SYSTEM_SENDERS.has(from.slice(0, from.lastIndexOf('@')).toLowerCase())) return 'sent by a mailer-daemon'
  const { autoSubmitted, isReport } = loopFacts(mail)
  if (autoSubmitted && !autoSubmitted.startsWith('no')) return `Auto-Submitted: ${autoSubmitted}`
  if (isReport) return 'a report'
  return undefined
}

function loopFacts(mail: Submitted): { autoSubmitted: string | undefined; isReport: boolean } {
  const e = mail.envelope
  if (e.isReport !== undefined) return { autoSubmitted: e.autoSubmitted, isReport: e.isReport }
  let headers: HeaderField[]
  try {
    headers = readHeader(mail.message).headers
  } catch {
    return { autoSubmitted: undefined, isReport: false }
  }
  const value = (key: string) =>
    headers
      .find((h) => h.key === key)
      ?.value.trim()
      .toLowerCase()
  return { autoSubmitted: value('auto-submitted'), isReport: value('content-type')?.startsWith('multipart/report') ?? false }
}
