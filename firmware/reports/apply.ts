import { Classifier } from '../bounces/classify.ts'
import { WEBHOOK_EVENTS } from '../config/sections/reports.ts'
import type { RecipientState } from './schema.ts'
import type { Param, Tx } from './store.ts'

/** An audit record as the trail writes it: `seq`, `time` and the event's fields, recipients as HMAC + mask. */
export interface AuditRecord {
  seq: number
  time: string
  type: string
  [field: string]: unknown
}

type RecipientRef = { h: string | null; m: string }

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

type Group = { day: string; batch: string; account: string; cls: string }
type Counter =
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

type Row = {
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

/** Latency histogram buckets: ten per decade of milliseconds (a percentile is exact to ±12 %). */
export const latencyBucket = (ms: number) => Math.max(0, Math.floor(Math.log10(Math.max(1, ms)) * 10))
export const bucketMs = (bucket: number) => 10 ** ((bucket + 0.5) / 10)

/**
 * Applies one audit record to the ledger (M8, M9): the statement and
 * recipient rows move to their new state, the day's counts follow, and the
 * firm's webhooks get their events in the outbox — all in the caller's
 * transaction, so the ledger never holds half a record. A record seen again
 * (a rebuild, a replay after a crash) changes nothing twice: every count
 * moves only with the state change it counts.
 */
export class LedgerApplier {
  readonly #ctx: ApplyContext
  readonly #classifier: Classifier
  #tx!: Tx
  #record!: AuditRecord
  #hooks = 0

  constructor(ctx: ApplyContext) {
    this.#ctx = ctx
    this.#classifier = ctx.classifier ?? new Classifier()
  }

  async apply(tx: Tx, record: AuditRecord): Promise<void> {
    this.#tx = tx
    this.#record = record
    this.#hooks = 0
    const r = record
    switch (r.type) {
      case 'policy.accepted':
        return this.#tagged(str(r.id), str(r.statementId), str(r.statementClass), str(r.batch))
      case 'policy.decision':
        if (r.outcome !== 'refused') return
        await this.#run('INSERT INTO refused_tags (box, id, statement_class, batch) VALUES (?, ?, ?, ?) ON CONFLICT (box, id) DO NOTHING', [
          this.#ctx.box,
          str(r.id) ?? '',
          str(r.statementClass) ?? null,
          str(r.batch) ?? null,
        ])
        return
      case 'submission.refused':
        return this.#refused(str(r.id), str(r.account), str(r.code) ?? 'unknown')
      case 'signing.signed': {
        const smime = r.smime as { serial?: string } | undefined
        const messageId = str(r.messageId)
        if (!smime?.serial && !messageId) return
        await this.#run(
          'INSERT INTO statements (box, id, cert_serial, message_id) VALUES (?, ?, ?, ?) ON CONFLICT (box, id) DO UPDATE SET ' +
            'cert_serial = COALESCE(excluded.cert_serial, statements.cert_serial), message_id = COALESCE(excluded.message_id, statements.message_id)',
          [this.#ctx.box, str(r.id) ?? '', smime?.serial ?? null, messageId ?? null],
        )
        return
      }
      case 'submission.accepted':
        return this.#accepted(str(r.id) ?? '', str(r.account), Number(r.bytes) || 0, (r.recipients as RecipientRef[] | undefined) ?? [])
      case 'delivery.attempt':
        if ((str(r.kind) ?? 'statement') !== 'statement') return
        return this.#attempt(r)
      case 'spool.final':
        if (r.outcome === 'expired' || r.outcome === 'removed') return this.#ended(str(r.id) ?? '', r.outcome)
        if (r.outcome === 'unread') return this.#unread(str(r.id) ?? '', str(r.reason) ?? 'no read receipt')
        if (r.outcome === 'read') return this.#endedRead(str(r.id) ?? '', str(r.reason) ?? '')
        return
      case 'tracking.open':
      case 'tracking.click':
        return this.#tracked(r)
      case 'returnpath.report':
        return this.#returned(r)
      case 'tracking.confirm': {
        const id = str(r.id) ?? ''
        const row = (await this.#rows(id)).find((x) => x.idx === Number(r.recipient))
        if (row?.state === 'delivered') await this.#read(id, row, 'confirm-link')
        return
      }
    }
  }

  async #tagged(id: string | undefined, statementId: string | undefined, cls: string | undefined, batch: string | undefined): Promise<void> {
    if (!id) return
    await this.#run(
      'INSERT INTO statements (box, id, statement_id, statement_class, batch) VALUES (?, ?, ?, ?, ?) ' +
        'ON CONFLICT (box, id) DO UPDATE SET statement_id = excluded.statement_id, statement_class = excluded.statement_class, batch = excluded.batch',
      [this.#ctx.box, id, statementId ?? null, cls ?? null, batch ?? null],
    )
  }

  async #refused(id: string | undefined, account: string | undefined, code: string): Promise<void> {
    const day = this.#ctx.dayOf(this.#time())
    let tags: { statement_class: string | null; batch: string | null } | undefined
    if (id) {
      tags = await this.#tx.get('SELECT statement_class, batch FROM refused_tags WHERE box = ? AND id = ?', [this.#ctx.box, id])
      if (tags) await this.#run('DELETE FROM refused_tags WHERE box = ? AND id = ?', [this.#ctx.box, id])
    }
    const g: Group = { day, batch: tags?.batch ?? day, account: account ?? '', cls: tags?.statement_class ?? '' }
    await this.#count(g, 'refused')
    await this.#detail(g, 'refused', code)
  }

  async #accepted(id: string, account: string | undefined, bytes: number, recipients: readonly RecipientRef[]): Promise<void> {
    const at = this.#time()
    const day = this.#ctx.dayOf(at)
    const box = this.#ctx.box
    const known = await this.#tx.get<{ accepted_at: number | null }>('SELECT accepted_at FROM statements WHERE box = ? AND id = ?', [box, id])
    if (known?.accepted_at != null) return // seen before (a replay)
    await this.#run(
      'INSERT INTO statements (box, id, account, day, accepted_at, bytes, recipients, batch) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ' +
        'ON CONFLICT (box, id) DO UPDATE SET account = excluded.account, day = excluded.day, accepted_at = excluded.accepted_at, ' +
        'bytes = excluded.bytes, recipients = excluded.recipients, batch = COALESCE(statements.batch, excluded.batch)',
      [box, id, account ?? null, day, at, bytes, recipients.length, day],
    )
    const s = (await this.#tx.get<{ batch: string; statement_class: string | null; statement_id: string | null }>(
      'SELECT batch, statement_class, statement_id FROM statements WHERE box = ? AND id = ?',
      [box, id],
    ))!
    const g: Group = { day, batch: s.batch, account: account ?? '', cls: s.statement_class ?? '' }
    for (const [idx, rcpt] of recipients.entries()) {
      await this.#run(
        'INSERT INTO recipients (box, id, idx, rcpt_hash, rcpt_mask, state, day, accepted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ' +
          'ON CONFLICT (box, id, idx) DO NOTHING',
        [box, id, idx, rcpt.h, rcpt.m, 'accepted', day, at],
      )
      await this.#hook('accepted', id, { ...g, statementId: s.statement_id }, idx, rcpt.m, {})
    }
    await this.#count(g, 'submitted')
    await this.#count(g, 'recipients', recipients.length)
    await this.#applyEarly(id)
  }

  async #attempt(r: AuditRecord): Promise<void> {
    const id = str(r.id) ?? ''
    const rows = await this.#rows(id)
    if (rows.length === 0) return this.#early(id, r)
    const reply = str(r.reply) ?? ''
    const at = this.#time()
    for (const ref of (r.recipients as RecipientRef[] | undefined) ?? []) {
      const row = match(rows, ref)
      if (!row) continue
      const g = group(row)
      const where = [this.#ctx.box, id, row.idx]
      if (r.outcome === 'delivered') {
        if (row.state !== 'accepted') continue
        row.state = 'delivered'
        await this.#run(
          'UPDATE recipients SET state = ?, delivered_at = ?, mx = ?, source_ip = ?, tls = ?, last_reply = ? WHERE box = ? AND id = ? AND idx = ?',
          ['delivered', at, str(r.mx) ?? null, str(r.sourceIp) ?? null, str(r.tls) ?? null, reply, ...where],
        )
        await this.#count(g, 'delivered')
        await this.#detail(g, 'latency', String(latencyBucket(at - row.accepted_at)))
        await this.#hook('delivered', id, g, row.idx, row.rcpt_mask, { mx: str(r.mx), tls: str(r.tls) })
      } else if (r.outcome === 'deferred') {
        if (row.state !== 'accepted') continue
        await this.#run('UPDATE recipients SET deferrals = deferrals + 1, last_reply = ? WHERE box = ? AND id = ? AND idx = ?', [reply, ...where])
        if (row.deferrals === 0) await this.#count(g, 'deferred')
        row.deferrals++
        await this.#hook('deferred', id, g, row.idx, row.rcpt_mask, { reply, attempts: row.deferrals })
      } else if (r.outcome === 'bounced') {
        if (row.state !== 'accepted') continue
        row.state = 'bounced'
        const b = this.#classifier.classify({ text: reply, command: str(r.command) })
        const paper = `bounced: ${b.category}`
        await this.#run(
          'UPDATE recipients SET state = ?, bounced_at = ?, bounce_reason = ?, bounce_hard = ?, last_reply = ?, paper_owed_at = ?, paper_reason = ? ' +
            'WHERE box = ? AND id = ? AND idx = ?',
          ['bounced', at, b.category, b.hard ? 1 : 0, reply, at, paper, ...where],
        )
        await this.#count(g, b.hard ? 'bounced_hard' : 'bounced_soft')
        await this.#detail(g, 'bounce', b.category)
        await this.#count(g, 'paper_owed')
        await this.#hook('bounced', id, g, row.idx, row.rcpt_mask, { reason: b.category, hard: b.hard, status: b.status, reply })
        await this.#hook('paper_owed', id, g, row.idx, row.rcpt_mask, { reason: paper })
      }
    }
  }

  /**
   * A record about a mail the ledger has not seen accepted yet: the spool makes a
   * mail deliverable before the submission server records its acceptance, so a
   * fast receiver's answer can come first in the trail. Kept until the acceptance
   * arrives, then applied in order (a mail that never arrives is not a statement:
   * retention deletes what waits).
   */
  async #early(id: string, r: AuditRecord): Promise<void> {
    if (!id) return
    await this.#run('INSERT INTO early_records (box, id, seq, day, record) VALUES (?, ?, ?, ?, ?) ON CONFLICT (box, id, seq) DO NOTHING', [
      this.#ctx.box,
      id,
      r.seq,
      this.#ctx.dayOf(this.#time()),
      JSON.stringify(r),
    ])
  }

  /** The records that came before the mail's acceptance, applied now, in trail order. */
  async #applyEarly(id: string): Promise<void> {
    const waiting = await this.#tx.all<{ record: string }>('SELECT record FROM early_records WHERE box = ? AND id = ? ORDER BY seq', [this.#ctx.box, id])
    if (waiting.length === 0) return
    await this.#run('DELETE FROM early_records WHERE box = ? AND id = ?', [this.#ctx.box, id])
    const accepted = this.#record
    for (const w of waiting) {
      const r = JSON.parse(w.record) as AuditRecord
      // Applied as of its own time; its webhook events keep the acceptance's place (after it).
      this.#record = { ...r, seq: accepted.seq }
      if (r.type === 'delivery.attempt') await this.#attempt({ ...r, seq: accepted.seq })
      else if (r.type === 'spool.final') await this.#ended(id, r.outcome as 'expired' | 'removed')
    }
    this.#record = accepted
  }

  /** M8: a mail that ran out of time, or that an operator removed: every recipient not yet final owes paper. */
  async #ended(id: string, outcome: 'expired' | 'removed'): Promise<void> {
    const at = this.#time()
    const paper = outcome === 'expired' ? 'expired' : 'removed by an operator'
    const rows = await this.#rows(id)
    if (rows.length === 0) return this.#early(id, this.#record)
    for (const row of rows) {
      if (row.state !== 'accepted') continue
      const g = group(row)
      await this.#run(`UPDATE recipients SET state = ?, ${outcome}_at = ?, paper_owed_at = ?, paper_reason = ? WHERE box = ? AND id = ? AND idx = ?`, [
        outcome,
        at,
        at,
        paper,
        this.#ctx.box,
        id,
        row.idx,
      ])
      await this.#count(g, outcome)
      await this.#count(g, 'paper_owed')
      await this.#hook(outcome, id, g, row.idx, row.rcpt_mask, {})
      await this.#hook('paper_owed', id, g, row.idx, row.rcpt_mask, { reason: paper })
    }
  }

  /**
   * M8, M11: a report that came back. A DSN that says failed turns a delivered recipient into
   * bounced, with its category, and owes paper; an MDN "displayed" is the read; anything
   * else (a delay, a deleted-unread MDN, an auto-reply, a complaint, a report about a
   * recipient already final, one no token tied to a statement) is counted, changing nothing.
   */
  async #returned(r: AuditRecord): Promise<void> {
    const id = str(r.id)
    const row = id === undefined ? undefined : (await this.#rows(id)).find((x) => x.idx === Number(r.recipient))
    const at = this.#time()
    if (!id || !row) {
      const day = this.#ctx.dayOf(at)
      return this.#detail({ day, batch: day, account: '', cls: '' }, 'report', 'unmatched')
    }
    const g = group(row)
    const where = [this.#ctx.box, id, row.idx]
    const kind = str(r.kind) ?? 'unknown'
    if (kind === 'dsn' && r.action === 'failed') {
      if (row.state !== 'delivered' && row.state !== 'accepted') return this.#detail(g, 'report', 'after-final')
      const category = str(r.category) ?? 'unclassified'
      const hard = r.hard === true
      const reply = str(r.reply) ?? ''
      const paper = `bounced: ${category}`
      row.state = 'bounced'
      await this.#run(
        'UPDATE recipients SET state = ?, bounced_at = ?, bounce_reason = ?, bounce_hard = ?, last_reply = ?, paper_owed_at = ?, paper_reason = ? ' +
          'WHERE box = ? AND id = ? AND idx = ?',
        ['bounced', at, category, hard ? 1 : 0, reply, at, paper, ...where],
      )
      await this.#count(g, hard ? 'bounced_hard' : 'bounced_soft')
      await this.#detail(g, 'bounce', category)
      await this.#detail(g, 'report', 'bounce')
      await this.#count(g, 'paper_owed')
      await this.#hook('bounced', id, g, row.idx, row.rcpt_mask, { reason: category, hard, status: str(r.status), reply, async: true })
      await this.#hook('paper_owed', id, g, row.idx, row.rcpt_mask, { reason: paper })
      return
    }
    if (kind === 'mdn' && r.disposition === 'displayed') {
      await this.#detail(g, 'report', row.read_at === null ? 'read' : 'read-again')
      return this.#read(id, row, 'mdn', str(r.dispositionMode))
    }
    const what = kind === 'dsn' ? `dsn-${str(r.action) ?? 'unknown'}` : kind === 'mdn' ? `mdn-${str(r.disposition) || 'unknown'}` : kind
    await this.#detail(g, 'report', what)
  }

  /** M11: the first read of a recipient's statement, by whatever evidence its class counts (an MDN, a confirmation, an open). */
  async #read(id: string, row: Row, evidence: string, mode?: string): Promise<void> {
    if (row.read_at !== null) return
    const at = this.#time()
    row.read_at = at
    const g = group(row)
    await this.#run('UPDATE recipients SET read_at = ? WHERE box = ? AND id = ? AND idx = ?', [at, this.#ctx.box, id, row.idx])
    await this.#count(g, 'read')
    await this.#hook('read', id, g, row.idx, row.rcpt_mask, { evidence, ...(mode ? { mode } : {}) })
  }

  /** M11: a statement ended as read: the evidence its class counts (an open, a confirmation) is the read, if no MDN was already. */
  async #endedRead(id: string, reason: string): Promise<void> {
    const evidence = /\((mdn|open|confirm-link)\)/.exec(reason)?.[1] ?? 'mdn'
    for (const row of await this.#rows(id)) if (row.state === 'delivered') await this.#read(id, row, evidence)
  }

  /** M11: an awaiting statement's time for its read receipt ran out: each delivered recipient not read owes paper. */
  async #unread(id: string, reason: string): Promise<void> {
    const at = this.#time()
    const paper = reason.startsWith('no read receipt') ? reason : `no read receipt: ${reason}`
    for (const row of await this.#rows(id)) {
      if (row.state !== 'delivered' || row.read_at !== null || row.paper_owed_at !== null) continue
      const g = group(row)
      await this.#run('UPDATE recipients SET paper_owed_at = ?, paper_reason = ? WHERE box = ? AND id = ? AND idx = ?', [at, paper, this.#ctx.box, id, row.idx])
      await this.#count(g, 'paper_owed')
      await this.#hook('paper_owed', id, g, row.idx, row.rcpt_mask, { reason: paper })
    }
  }

  /** M9: opens and clicks. A link scanner's fetch is kept in the totals but counts as no one's open or click. */
  async #tracked(r: AuditRecord): Promise<void> {
    const id = str(r.id) ?? ''
    const row = (await this.#rows(id)).find((x) => x.idx === Number(r.recipient))
    if (!row) return
    const g = group(row)
    const agent = str(r.agent) ?? 'unknown'
    const at = this.#time()
    const where = [this.#ctx.box, id, row.idx]
    if (r.type === 'tracking.open') {
      // A person's first open counts as opened; an image proxy's fetch (on arrival, for everyone) counts once
      // apart and does not stand in the way of the person's own open later; a scanner's counts as nothing.
      const person = agent !== 'scanner' && agent !== 'proxy'
      const first = person ? row.opened_at === null : agent === 'proxy' && row.opened_at === null && row.open_agent === null
      if (first && person)
        await this.#run('UPDATE recipients SET opens = opens + 1, opened_at = ?, open_agent = ? WHERE box = ? AND id = ? AND idx = ?', [at, agent, ...where])
      else if (first) await this.#run('UPDATE recipients SET opens = opens + 1, open_agent = ? WHERE box = ? AND id = ? AND idx = ?', [agent, ...where])
      else await this.#run('UPDATE recipients SET opens = opens + 1 WHERE box = ? AND id = ? AND idx = ?', where)
      if (!first) return
      await this.#count(g, person ? 'opened' : 'opened_by_proxy')
      if (person) await this.#hook('opened', id, g, row.idx, row.rcpt_mask, { agent })
    } else {
      const first = row.clicked_at === null && agent !== 'scanner'
      if (first) await this.#run('UPDATE recipients SET clicks = clicks + 1, clicked_at = ? WHERE box = ? AND id = ? AND idx = ?', [at, ...where])
      else await this.#run('UPDATE recipients SET clicks = clicks + 1 WHERE box = ? AND id = ? AND idx = ?', where)
      if (!first) return
      await this.#count(g, 'clicked')
      await this.#hook('clicked', id, g, row.idx, row.rcpt_mask, { agent, link: Number(r.link) })
    }
  }

  #rows(id: string): Promise<Row[]> {
    return this.#tx.all<Row>(
      'SELECT r.idx, r.rcpt_hash, r.rcpt_mask, r.state, r.deferrals, r.accepted_at, r.opened_at, r.open_agent, r.clicked_at, r.read_at, r.paper_owed_at, ' +
        's.statement_id, s.day, s.batch, s.account, s.statement_class ' +
        'FROM recipients r JOIN statements s ON s.box = r.box AND s.id = r.id WHERE r.box = ? AND r.id = ? ORDER BY r.idx',
      [this.#ctx.box, id],
    )
  }

  async #count(g: Group, counter: Counter, n = 1): Promise<void> {
    await this.#run(
      `INSERT INTO daily (box, day, batch, account, class, ${counter}) VALUES (?, ?, ?, ?, ?, ?) ` +
        `ON CONFLICT (box, day, batch, account, class) DO UPDATE SET ${counter} = daily.${counter} + excluded.${counter}`,
      [this.#ctx.box, g.day, g.batch, g.account, g.cls, n],
    )
  }

  async #detail(g: Group, kind: 'refused' | 'bounce' | 'latency' | 'report', key: string): Promise<void> {
    await this.#run(
      'INSERT INTO daily_detail (box, day, batch, account, class, kind, key, n) VALUES (?, ?, ?, ?, ?, ?, ?, 1) ' +
        'ON CONFLICT (box, day, batch, account, class, kind, key) DO UPDATE SET n = daily_detail.n + 1',
      [this.#ctx.box, g.day, g.batch, g.account, g.cls, kind, key],
    )
  }

  /** One webhook event per endpoint that wants it, in the outbox; ordered per statement by the record's place in the trail. */
  async #hook(
    type: WebhookEvent,
    id: string,
    g: Group & { statementId?: string | null },
    recipientIndex: number,
    masked: string,
    extra: Record<string, unknown>,
  ): Promise<void> {
    const endpoints = this.#ctx.webhooks.filter((w) => w.events.includes(type))
    if (endpoints.length === 0) return
    const n = this.#hooks++
    const eventId = `${this.#ctx.box}.${this.#record.seq}.${n}`
    const payload = JSON.stringify({
      id: eventId,
      type,
      time: this.#record.time,
      queueId: id,
      statementId: g.statementId ?? null,
      statementClass: g.cls || null,
      batch: g.batch,
      account: g.account || null,
      recipient: masked,
      recipientIndex,
      ...Object.fromEntries(Object.entries(extra).filter(([, v]) => v !== undefined)),
    })
    const now = this.#time()
    for (const w of endpoints) {
      await this.#run(
        'INSERT INTO outbox (box, url, event_id, ordering, pos, payload, created_at, next_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ' +
          'ON CONFLICT (box, url, event_id) DO NOTHING',
        [this.#ctx.box, w.url, eventId, id, this.#record.seq * 64 + n, payload, now, now],
      )
    }
  }

  #time(): number {
    return Date.parse(this.#record.time)
  }

  #run(sql: string, params: readonly Param[]): Promise<number> {
    return this.#tx.run(sql, params)
  }
}

function group(row: Row): Group & { statementId: string | null } {
  return { day: row.day, batch: row.batch ?? row.day, account: row.account ?? '', cls: row.statement_class ?? '', statementId: row.statement_id }
}

/** The row a recipient reference names: by its HMAC, or (the HSM was away when it was recorded) by its masked form when that is unique. */
function match(rows: Row[], ref: RecipientRef): Row | undefined {
  if (ref.h) return rows.find((r) => r.rcpt_hash === ref.h)
  const same = rows.filter((r) => r.rcpt_mask === ref.m)
  return same.length === 1 ? same[0] : undefined
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined
}
