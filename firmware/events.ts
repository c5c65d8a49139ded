import { maskAddress, type Logger } from './log.ts'
import { maskPersonalData, redactText } from './pii/redact.ts'

/**
 * The box's one event vocabulary (S6, S7, S13, M8, M11): what happens to mail,
 * keys, accounts and configuration. Components emit through `EventSink`; the
 * audit trail (firmware/audit/) records every event, the log shows them.
 *
 * Events carry ids, outcomes and classes, never content or subjects. The only
 * personal data is in `recipients`, which no sink stores in clear: the audit
 * trail keeps a keyed hash (HMAC in the HSM) and a masked form, the log the
 * masked form.
 */
/** Why a report changes nothing for its statement. */
export type NoEffect =
  /** It came without a token (to postmaster, or another accepted address): only a person may look at it. */
  | 'no-token'
  /** Its token is of the other kind: a DSN at a read-receipt address, an MDN at a bounce address. */
  | 'mismatched'
  /** A DSN that says the mail is delayed, relayed, delivered or expanded: not a failure. */
  | 'not-failed'
  /** An MDN that is not "displayed" (deleted, dispatched, processed …). */
  | 'not-displayed'
  /** A complaint (a feedback report): counted, never a bounce and never a read. */
  | 'complaint'
  /** An automatic reply (vacation, out of office) or a notice the box could not read as a report. */
  | 'not-a-report'

export type BoxEvent =
  | { type: 'submission.auth'; account: string; clientAddress: string; outcome: 'success' | 'failure'; reason?: string }
  | {
      type: 'submission.accepted'
      id: string
      account: string | undefined
      clientAddress: string
      tls: string | undefined
      recipients: readonly string[]
      bytes: number
      /** Written at a start: the spool had the mail, a crash had kept its acceptance from the trail (#33). */
      recovered?: boolean
    }
  | {
      type: 'submission.refused'
      /** The queue id the box had given the mail when it refused it (the policy decision names it too). */
      id?: string
      account: string | undefined
      clientAddress: string
      code: string
      reply: string
    }
  | {
      type: 'policy.decision'
      id: string
      account: string | undefined
      profile: string
      rule: string
      mode: 'monitor' | 'enforce'
      outcome: 'refused' | 'monitor-hit'
      /** The firm's tags of the mail, for reports of refusals by statement class and batch (M9). */
      statementId?: string | undefined
      statementClass?: string | undefined
      batch?: string | undefined
    }
  | {
      type: 'policy.consent_list'
      profile: string
      /** How many addresses the list now holds, and which file version (no addresses in the trail). */
      addresses: number
      sha256: string
      outcome: 'loaded' | 'kept-previous'
      reason?: string
    }
  | { type: 'policy.inspection_budget'; id: string; account: string | undefined; bytes: number; budgetMs: number }
  | {
      type: 'policy.accepted'
      id: string
      account: string | undefined
      profile: string
      statementClass: string | undefined
      statementId: string | undefined
      /** X-Statement-Batch, when the firm gives one (reports group by it, else by the submission day). */
      batch?: string | undefined
    }
  | {
      type: 'signing.signed'
      id: string
      smime: { serial: string; issuer: string; algorithm: string } | undefined
      dkim: readonly string[]
      encrypted: boolean
      /** The statement's Message-ID (without brackets): a bounce without its token is tied to the statement by it (M8). */
      messageId?: string
    }
  | { type: 'spool.queued'; id: string; epoch: string; bytes: number }
  | { type: 'spool.deferred'; id: string; attempts: number; nextAttemptAt: number; reason: string }
  | { type: 'spool.final'; id: string; outcome: 'delivered' | 'bounced' | 'expired' | 'removed' | 'read' | 'unread'; reason: string }
  /** M11: a statement of a read-receipt class delivered (`sends` times) and kept until `until` for its read receipt; never sent after `deadline`. */
  | { type: 'spool.awaiting_receipt'; id: string; sends: number; until: string; deadline: string }
  | { type: 'spool.held' | 'spool.released' | 'spool.retried'; id: string }
  | { type: 'spool.record_shredded'; id: string }
  | { type: 'spool.quarantined'; file: string; reason: string }
  | { type: 'spool.alarm'; kind: 'queue' | 'disk'; value: number; limit: number }
  | { type: 'spool.epoch_key_created' | 'spool.epoch_key_destroyed'; epoch: string }
  | {
      type: 'delivery.attempt'
      id: string
      kind: string
      outcome: 'delivered' | 'deferred' | 'bounced'
      recipients: readonly string[]
      mx: string | undefined
      sourceIp: string | undefined
      reply: string
      tls: string | undefined
      /** #33: which transaction (`<attempt>.<n>`): how a restart finds whether the trail has it. */
      transaction?: string
      /** #33: written after a restart from the journal, the trail having lost it in the crash. */
      replayed?: boolean
    }
  | { type: 'hsm.status'; state: 'ok' | 'keys-missing' | 'unavailable'; token: string | undefined; error: string | undefined; missing: readonly string[] }
  | ({ type: 'hsm.probe' } & ProbeSummary)
  | {
      type: 'admin.action'
      /** The operator's login as the client reports it; the channel's permissions are what authenticate. */
      who: string
      /**
       * control-socket: a request to the running box; cli: a tool that acted itself (e.g. on the HSM)
       * and reports it; admin-page: a person logged in to the admin page.
       */
      via: 'control-socket' | 'cli' | 'admin-page'
      action: string
      target: string | undefined
      /** The queue id, when the action was on a queued mail: the audit search by queue id finds the actions too. */
      id?: string
      outcome: 'ok' | 'refused'
      reason?: string
      /** What the action did, in a few words (e.g. the imported certificate's subject and serial). */
      detail?: string
    }
  | { type: 'hsm.certificate_expiring'; label: string; serial: string; notAfter: string; daysLeft: number }
  | { type: 'admin.login'; user: string; clientAddress: string; outcome: 'success' | 'failure'; reason?: string }
  | { type: 'config.changed'; who: string; reason: string; before: unknown; after: unknown }
  /** S7: a new numbered configuration version (config/versions.ts): who made it, who approved it, why. */
  | { type: 'config.version'; number: number; source: 'file' | 'page' | 'restore' | 'migration'; author: string; approver: string; reason: string }
  /** S5, S7: a configuration proposal proposed, approved (applied), withdrawn, expired or failed to apply. */
  | {
      type: 'config.proposal'
      id: string
      action: string
      who: string
      author: string
      reason: string
      baseVersion: number
      version?: number
      note?: string
    }
  | { type: 'firmware.update'; step: string; version: string; outcome: 'ok' | 'failed'; detail?: string }
  | { type: 'factory.reset'; who: string; outcome: 'ok' | 'failed' }
  | { type: 'audit.started'; lastSeq: number; tornBytes: number }
  | { type: 'audit.disk_budget'; bytes: number; budget: number }
  | { type: 'audit.retention'; removed: readonly string[] }
  /** M9: a customer's mail client fetched the tracking image (`open`) or followed a rewritten link (`click`). */
  | {
      type: 'tracking.open' | 'tracking.click'
      id: string
      /** Which recipient of the mail (its place in the envelope) and, for a click, which link of the mail. */
      recipient: number
      link?: number
      /** What fetched it, by its User-Agent: a person's mail client or browser, an image proxy, a link scanner. */
      agent: 'client' | 'browser' | 'proxy' | 'scanner' | 'unknown'
    }
  /**
   * M8, M11: a report came back to the return path and was committed before its 250: a DSN, an MDN,
   * a complaint or an auto-reply, with what it does to its statement (#30: return-path/decide.ts, the one
   * decision; the ledger applies this record only). `id` and `recipient` when a token tied it to a
   * statement's recipient; without one it is unmatched and decides nothing, never guessed.
   */
  | {
      type: 'returnpath.report'
      id?: string
      recipient?: number
      matchedBy: 'verp' | 'read-receipt-address' | 'none'
      kind: 'dsn' | 'mdn' | 'feedback' | 'auto-reply' | 'unknown'
      /** What it does: a bounce, the read, or nothing (and why). */
      effect: 'bounce' | 'read' | 'none'
      why?: NoEffect
      /**
       * What the spool made of it: `ended` (it ended the statement: the read, or a hard bounce of one
       * awaiting its read receipt), `awaiting` (the statement waits on; its end decides), `final` (the
       * statement had left the spool: the report is the last word), `not-evidence` (a read, but not the
       * evidence its class counts).
       */
      spool?: 'ended' | 'awaiting' | 'final' | 'not-evidence'
      /** DSN: what the reporting server did (failed: a bounce; delayed: still trying). */
      action?: string
      category?: string
      hard?: boolean
      status?: string
      /** The receiver's words, redacted (pii/redact.ts: addresses, IDs and long numbers masked), at most 200 characters. */
      reply?: string
      /** MDN: displayed, deleted, dispatched, processed …, and whether a person sent it (manual) or the client did. */
      disposition?: string
      dispositionMode?: 'automatic' | 'manual'
      feedbackType?: string
      /** Without a token: a hash of the Message-ID it quotes, a hint for a person (decide.ts messageIdHint). */
      messageIdHint?: string
      clientAddress: string
      bytes: number
    }
  /** Reports the return-path listener refused since the last report (at most one a minute per reason): counted, never detailed. */
  | {
      type: 'returnpath.refused'
      reason: 'forged-token' | 'unknown-address' | 'too-large' | 'rate-limited' | 'unreadable' | 'too-many-recipients' | 'busy' | 'too-many-connections'
      count: number
    }
  /** M11: a customer pressed the confirmation button of a statement of a confirm-link class. */
  | { type: 'tracking.confirm'; id: string; recipient: number; agent: 'client' | 'browser' | 'proxy' | 'scanner' | 'unknown' }
  /** Tracking requests refused since the last report (at most one a minute per reason): counted, never detailed. */
  | { type: 'tracking.refused'; reason: 'unknown-token' | 'forged-token'; count: number }
  /** S13: statement rows older than `reports.retentionDays` deleted from the ledger. */
  | { type: 'reports.retention'; statementRows: number; recipientRows: number; before: string }
  /** M9: a webhook endpoint of the firm failing for longer than `reports.webhooks.alarmAfterSeconds` (mail is not held up). */
  | { type: 'reports.webhook_failing'; url: string; since: string; pending: number; error: string }
  | { type: 'reports.webhook_recovered'; url: string; pending: number }

export type BoxEventType = BoxEvent['type']

export interface EventSink {
  emit(event: BoxEvent): void
  /**
   * Resolves once every event emitted so far is on disk, for a sink that keeps
   * them (the audit trail): the box waits for it before it acknowledges a mail
   * or journals a delivery, so a crash never leaves the spool knowing more than
   * the trail (the ledger is made from the trail).
   */
  durable?(): Promise<void>
}

/**
 * Free text from other servers (an MX's reply, a bounce's words) often names
 * the recipient ("550 5.1.1 <c@example.com>: unknown user") and may carry
 * more (#30: a name and a national ID): a `reply` is redacted before any sink
 * keeps it (S6; pii/redact.ts), a `reason` has its addresses and IDs masked.
 */
export function withMaskedText<E extends BoxEvent>(event: E): E {
  const e = event as E & { reply?: unknown; reason?: unknown }
  if (typeof e.reply !== 'string' && typeof e.reason !== 'string') return event
  const out: Record<string, unknown> = { ...event }
  if (typeof e.reply === 'string') out.reply = redactText(e.reply)
  if (typeof e.reason === 'string') out.reason = maskPersonalData(e.reason)
  return out as E
}

/** The event with recipients replaced by their masked forms, for operational logs. */
export function maskedEvent(event: BoxEvent): BoxEvent {
  const e = withMaskedText(event)
  if (!('recipients' in e)) return e
  return { ...e, recipients: e.recipients.map(maskAddress) }
}

/**
 * Writes each event to the JSON log at debug level (recipients masked): the
 * audit trail is the durable record, the log a troubleshooting view.
 */
export class LogEventSink implements EventSink {
  readonly #log: Logger
  constructor(log: Logger) {
    this.#log = log.child({ component: 'events' })
  }
  emit(event: BoxEvent): void {
    if (this.#log.isLevelEnabled('debug')) this.#log.debug({ event: maskedEvent(event) }, event.type)
  }
}

/** Every event to every sink, in the order given (the log first, then the audit trail). */
export class EventHub implements EventSink {
  readonly #sinks: EventSink[]
  constructor(sinks: EventSink[]) {
    this.#sinks = [...sinks]
  }
  add(sink: EventSink): void {
    this.#sinks.push(sink)
  }
  emit(event: BoxEvent): void {
    for (const s of this.#sinks) s.emit(event)
  }
  async durable(): Promise<void> {
    for (const s of this.#sinks) if (s.durable) await s.durable()
  }
}

/**
 * #38: what the start-up probe found, for the audit trail (`hsm.probe`) and the dashboard's HSM card: the
 * token, the box's mechanisms it lacks, each throw-away key's fate, whether the token kept each key in (M6),
 * and the refusal when the configuration cannot run on it.
 */
export interface ProbeSummary {
  token: string
  manufacturer: string
  model: string
  firmware: string
  /** The box's mechanisms the token does not list. */
  absent: readonly string[]
  /** Throw-away key of each type: 'ok' or the token's refusal. */
  keys: Readonly<Record<string, string>>
  /** M6: each type offered to C_WrapKey: 'refused (…)', 'wrapped', or 'not tried (…)'. */
  wrap: Readonly<Record<string, string>>
  /** AES-GCM in each parameter layout ('pkcs11-2.40', 'draft'): 'ok' or the token's refusal. */
  gcm?: Readonly<Record<string, string>>
  /** The config keys that need what the token lacks, with the mechanism. */
  missing: readonly string[]
  /** Why the box will not run on this token with this configuration; undefined when it will. */
  refused: string | undefined
}
