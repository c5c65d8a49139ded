import type { BoxEvent } from '../events.ts'
import type { Classifier } from '../return-path/classify.ts'
import type { WEBHOOK_EVENTS } from '../config/sections/reports.ts'
import type { RecipientState } from './schema.ts'
import type { Param, Tx } from './store.ts'

/** An audit record as the trail writes it: `seq`, `time` and the event's fields, recipients as HMAC + mask. */
/**
 * A trail record of event `E` as the ledger reads it (#34): E's own field names, so renaming a
 * field of a BoxEvent fails tsc here; each value possibly absent (a record older firmware wrote)
 * and unchecked (`str`, `Number` read it), since the record is text from the disk.
 */
export type AuditRecordOf<E extends { type: string }> = E extends unknown
  ? { seq: number; time: string; type: E['type'] } & { [K in Exclude<keyof E, 'type'>]?: unknown }
  : never

/** Any record of the trail: one of the box's events. */
export type AuditRecord = AuditRecordOf<BoxEvent>

/** The record of one event type. */
export type RecordOf<T extends BoxEvent['type']> = AuditRecordOf<Extract<BoxEvent, { type: T }>>

export type RecipientRef = { h: string | null; m: string }

export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number]

export interface ApplyContext {
  box: string
  /** The reporting day of a time (the firm's time zone). */
  dayOf(ms: number): string
  /** Endpoints and the events each wants; none while rebuilding (those events went out when they happened). */
  webhooks: readonly { url: string; events: readonly WebhookEvent[] }[]
  /** The bounce classifier (the firm's rules before the built-in ones); built-in only when absent. */
  classifier?: Classifier
}

export type Group = { day: string; batch: string; account: string; cls: string }
export type Counter =
  | 'submitted'
  | 'recipients'
  | 'refused'
  | 'delivered'
  | 'deferred'
  | 'bounced_hard'
  | 'bounced_soft'
  | 'expired'
  | 'removed'
  | 'opened'
  | 'opened_by_proxy'
  | 'clicked'
  | 'read'
  | 'paper_owed'
  | 'returned'

export type Row = {
  idx: number
  rcpt_hash: string | null
  rcpt_mask: string
  state: RecipientState
  deferrals: number
  accepted_at: number
  opened_at: number | null
  open_agent: string | null
  clicked_at: number | null
  read_at: number | null
  paper_owed_at: number | null
  statement_id: string | null
  day: string
  batch: string | null
  account: string | null
  statement_class: string | null
}

/**
 * The ledger's writes for one audit record, in the caller's transaction: the
 * rows of a mail, the day's counts and details, and the webhook events in the
 * outbox, each event numbered by the record's place in the trail.
 */
export class LedgerWrites {
  readonly box: string
  #hooks = 0

  readonly ctx: ApplyContext
  readonly tx: Tx
  /** The record being applied; a record kept from before its mail's acceptance is applied as of its own time. */
  record: AuditRecord

  constructor(ctx: ApplyContext, tx: Tx, record: AuditRecord) {
    this.ctx = ctx
    this.tx = tx
    this.record = record
    this.box = ctx.box
  }

  rows(id: string): Promise<Row[]> {
    return this.tx.all<Row>(
      'SELECT r.idx, r.rcpt_hash, r.rcpt_mask, r.state, r.deferrals, r.accepted_at, r.opened_at, r.open_agent, r.clicked_at, r.read_at, r.paper_owed_at, ' +
        's.statement_id, s.day, s.batch, s.account, s.statement_class ' +
        'FROM recipients r JOIN statements s ON s.box = r.box AND s.id = r.id WHERE r.box = ? AND r.id = ? ORDER BY r.idx',
      [this.ctx.box, id],
    )
  }

  async count(g: Group, counter: Counter, n = 1): Promise<void> {
    await this.run(
      `INSERT INTO daily (box, day, batch, account, class, ${counter}) VALUES (?, ?, ?, ?, ?, ?) ` +
        `ON CONFLICT (box, day, batch, account, class) DO UPDATE SET ${counter} = daily.${counter} + excluded.${counter}`,
      [this.ctx.box, g.day, g.batch, g.account, g.cls, n],
    )
  }

  async detail(g: Group, kind: 'refused' | 'bounce' | 'latency' | 'report', key: string): Promise<void> {
    await this.run(
      'INSERT INTO daily_detail (box, day, batch, account, class, kind, key, n) VALUES (?, ?, ?, ?, ?, ?, ?, 1) ' +
        'ON CONFLICT (box, day, batch, account, class, kind, key) DO UPDATE SET n = daily_detail.n + 1',
      [this.ctx.box, g.day, g.batch, g.account, g.cls, kind, key],
    )
  }

  /** One webhook event per endpoint that wants it, in the outbox; ordered per statement by the record's place in the trail. */
  async hook(
    type: WebhookEvent,
    id: string,
    g: Group & { statementId?: string | null },
    recipientIndex: number,
    masked: string,
    extra: Record<string, unknown>,
  ): Promise<void> {
    const endpoints = this.ctx.webhooks.filter((w) => w.events.includes(type))
    if (endpoints.length === 0) return
    const n = this.#hooks++
    const eventId = `${this.ctx.box}.${this.record.seq}.${n}`
    const payload = JSON.stringify({
      id: eventId,
      type,
      time: this.record.time,
      queueId: id,
      statementId: g.statementId ?? null,
      statementClass: g.cls || null,
      batch: g.batch,
      account: g.account || null,
      recipient: masked,
      recipientIndex,
      ...Object.fromEntries(Object.entries(extra).filter(([, v]) => v !== undefined)),
    })
    const now = this.time()
    for (const w of endpoints) {
      await this.run(
        'INSERT INTO outbox (box, url, event_id, ordering, pos, payload, created_at, next_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ' +
          'ON CONFLICT (box, url, event_id) DO NOTHING',
        [this.ctx.box, w.url, eventId, id, this.record.seq * 64 + n, payload, now, now],
      )
    }
  }

  time(): number {
    return Date.parse(this.record.time)
  }

  run(sql: string, params: readonly Param[]): Promise<number> {
    return this.tx.run(sql, params)
  }
}

export function group(row: Row): Group & { statementId: string | null } {
  return { day: row.day, batch: row.batch ?? row.day, account: row.account ?? '', cls: row.statement_class ?? '', statementId: row.statement_id }
}

/** The row a recipient reference names: by its HMAC, or (the HSM was away when it was recorded) by its masked form when that is unique. */
export function match(rows: Row[], ref: RecipientRef): Row | undefined {
  if (ref.h) return rows.find((r) => r.rcpt_hash === ref.h)
  const same = rows.filter((r) => r.rcpt_mask === ref.m)
  return same.length === 1 ? same[0] : undefined
}

export function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined
}
