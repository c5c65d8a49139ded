import type { Clock } from '../../hal/clock.ts'
import type { Config } from '../config/load.ts'
import type { Logger } from '../log.ts'
import { readHeader, type HeaderField } from '../mime/header.ts'
import { statementTagsOf } from '../pipeline/facts.ts'
import type { Submitted } from '../pipeline/handoff.ts'
import { newQueueId } from '../spool/ids.ts'
import type { Spool } from '../spool/spool.ts'
import { buildDsn, type DsnFacts, type DsnReason } from './dsn.ts'

/** A bounce that came back after the 250, as the return path and the ledger know it. */
export interface ReturnedBounce {
  id: string
  statementId: string | undefined
  rcpt: string
  reason: string
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
  async forMail(mail: Submitted, what: DsnReason, failed: readonly { rcpt: string; reason: string }[]): Promise<void> {
    const to = this.#config.delivery.notifyAddress
    if (!to || mail.envelope.kind === 'dsn' || failed.length === 0) return
    // The usual loop guards (RFC 3834 2, RFC 3464 4): no notice about a mail that is itself automatic.
    const automatic = automaticMail(mail)
    if (automatic) {
      this.#log.info({ id: mail.envelope.id, why: automatic }, 'no delivery notice for an automatic mail')
      return
    }
    await this.#enqueue(to, {
      queueId: mail.envelope.id,
      statementId: statementTagsOf(mail).statementId,
      auditCopy: mail.envelope.kind === 'audit-copy',
      what,
      failed,
      arrivedAt: mail.envelope.receivedAt,
    })
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
      failed: [{ rcpt: f.rcpt, reason: f.reason }],
      arrivedAt: f.arrivedAt,
    })
  }

  /** A notice to the firm, spooled (durable) like any mail, from the null sender. */
  async #enqueue(to: string, f: Omit<DsnFacts, 'host' | 'to' | 'now' | 'messageId'>): Promise<void> {
    const message = await buildDsn({ ...f, host: this.#config.submission.hostname, to, now: this.#clock.now(), messageId: newQueueId() })
    await this.#spool.accept({
      envelope: {
        id: newQueueId(),
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

const SYSTEM_SENDERS = new Set(['mailer-daemon', 'postmaster', 'mail-daemon', 'mailerdaemon'])

/**
 * Why a mail is automatic (so no notice is sent about it), or undefined: a
 * null sender, a mailer-daemon sender, `Auto-Submitted` other than `no`, or a
 * report (`multipart/report`).
 */
export function automaticMail(mail: Submitted): string | undefined {
  const from = mail.envelope.mailFrom
  if (from === '') return 'null sender'
  if (SYSTEM_SENDERS.has(from.slice(0, from.lastIndexOf('@')).toLowerCase())) return 'sent by a mailer-daemon'
  let headers: HeaderField[]
  try {
    headers = readHeader(mail.message).headers
  } catch {
    return undefined
  }
  for (const h of headers) {
    const value = h.value.trim().toLowerCase()
    if (h.key === 'auto-submitted' && !value.startsWith('no')) return `Auto-Submitted: ${value}`
    if (h.key === 'content-type' && value.startsWith('multipart/report')) return 'a report'
  }
  return undefined
}
