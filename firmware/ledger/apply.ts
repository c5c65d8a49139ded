import { Classifier } from '../return-path/classify.ts'
import { messageIdHint } from '../return-path/decide.ts'
import { endedRead, read, returned, tracked, unread } from './apply-returns.ts'
import { group, LedgerWrites, match, str, type ApplyContext, type AuditRecord, type Group, type RecipientRef, type RecordOf } from './ledger-writes.ts'
import type { Tx } from './store.ts'

export type { ApplyContext, AuditRecord, WebhookEvent } from './ledger-writes.ts'

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
  #w!: LedgerWrites

  constructor(ctx: ApplyContext) {
    this.#ctx = ctx
    this.#classifier = ctx.classifier ?? new Classifier()
  }

  async apply(tx: Tx, record: AuditRecord): Promise<void> {
    this.#w = new LedgerWrites(this.#ctx, tx, record)
    const r = record
    switch (r.type) {
      case 'policy.accepted':
        return this.#tagged(str(r.id), str(r.statementId), str(r.statementClass), str(r.batch))
      case 'policy.decision':
        if (r.outcome !== 'refused') return
        await this.#w.run('INSERT INTO refused_tags (box, id, statement_class, batch) VALUES (?, ?, ?, ?) ON CONFLICT (box, id) DO NOTHING', [
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
        await this.#w.run(
          'INSERT INTO statements (box, id, cert_serial, message_id, message_id_hint) VALUES (?, ?, ?, ?, ?) ON CONFLICT (box, id) DO UPDATE SET ' +
            'cert_serial = COALESCE(excluded.cert_serial, statements.cert_serial), message_id = COALESCE(excluded.message_id, statements.message_id), ' +
            'message_id_hint = COALESCE(excluded.message_id_hint, statements.message_id_hint)',
          [this.#ctx.box, str(r.id) ?? '', smime?.serial ?? null, messageId ?? null, messageId ? messageIdHint(messageId) : null],
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
        if (r.outcome === 'unread') return unread(this.#w, str(r.id) ?? '', str(r.reason) ?? 'no read receipt')
        if (r.outcome === 'read') return endedRead(this.#w, str(r.id) ?? '', str(r.reason) ?? '')
        return
      case 'tracking.open':
      case 'tracking.click':
        return tracked(this.#w, r)
      case 'returnpath.report':
        return returned(this.#w, r)
      case 'tracking.confirm': {
        const id = str(r.id) ?? ''
        const row = (await this.#w.rows(id)).find((x) => x.idx === Number(r.recipient))
        if (row?.state === 'delivered') await read(this.#w, id, row, 'confirm-link')
        return
      }
    }
  }

  async #tagged(id: string | undefined, statementId: string | undefined, cls: string | undefined, batch: string | undefined): Promise<void> {
    if (!id) return
    await this.#w.run(
      'INSERT INTO statements (box, id, statement_id, statement_class, batch) VALUES (?, ?, ?, ?, ?) ' +
        'ON CONFLICT (box, id) DO UPDATE SET statement_id = excluded.statement_id, statement_class = excluded.statement_class, batch = excluded.batch',
      [this.#ctx.box, id, statementId ?? null, cls ?? null, batch ?? null],
    )
  }

  async #refused(id: string | undefined, account: string | undefined, code: string): Promise<void> {
    const day = this.#ctx.dayOf(this.#w.time())
    let tags: { statement_class: string | null; batch: string | null } | undefined
    if (id) {
      tags = await this.#w.tx.get('SELECT statement_class, batch FROM refused_tags WHERE box = ? AND id = ?', [this.#ctx.box, id])
      if (tags) await this.#w.run('DELETE FROM refused_tags WHERE box = ? AND id = ?', [this.#ctx.box, id])
    }
    const g: Group = { day, batch: tags?.batch ?? day, account: account ?? '', cls: tags?.statement_class ?? '' }
    await this.#w.count(g, 'refused')
    await this.#w.detail(g, 'refused', code)
  }

  async #accepted(id: string, account: string | undefined, bytes: number, recipients: readonly RecipientRef[]): Promise<void> {
    const at = this.#w.time()
    const day = this.#ctx.dayOf(at)
    const box = this.#ctx.box
    const known = await this.#w.tx.get<{ accepted_at: number | null }>('SELECT accepted_at FROM statements WHERE box = ? AND id = ?', [box, id])
    if (known?.accepted_at != null) return // seen before (a replay)
    await this.#w.run(
      'INSERT INTO statements (box, id, account, day, accepted_at, bytes, recipients, batch) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ' +
        'ON CONFLICT (box, id) DO UPDATE SET account = excluded.account, day = excluded.day, accepted_at = excluded.accepted_at, ' +
        'bytes = excluded.bytes, recipients = excluded.recipients, batch = COALESCE(statements.batch, excluded.batch)',
      [box, id, account ?? null, day, at, bytes, recipients.length, day],
    )
    const s = (await this.#w.tx.get<{ batch: string; statement_class: string | null; statement_id: string | null }>(
      'SELECT batch, statement_class, statement_id FROM statements WHERE box = ? AND id = ?',
      [box, id],
    ))!
    const g: Group = { day, batch: s.batch, account: account ?? '', cls: s.statement_class ?? '' }
    for (const [idx, rcpt] of recipients.entries()) {
      await this.#w.run(
        'INSERT INTO recipients (box, id, idx, rcpt_hash, rcpt_mask, state, day, accepted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ' +
          'ON CONFLICT (box, id, idx) DO NOTHING',
        [box, id, idx, rcpt.h, rcpt.m, 'accepted', day, at],
      )
      await this.#w.hook('accepted', id, { ...g, statementId: s.statement_id }, idx, rcpt.m, {})
    }
    await this.#w.count(g, 'submitted')
    await this.#w.count(g, 'recipients', recipients.length)
    await this.#applyEarly(id)
  }

  async #attempt(r: RecordOf<'delivery.attempt'>): Promise<void> {
    const id = str(r.id) ?? ''
    const rows = await this.#w.rows(id)
    if (rows.length === 0) return this.#early(id, r)
    const reply = str(r.reply) ?? ''
    const at = this.#w.time()
    for (const ref of (r.recipients as RecipientRef[] | undefined) ?? []) {
      const row = match(rows, ref)
      if (!row) continue
      const g = group(row)
      const where = [this.#ctx.box, id, row.idx]
      if (r.outcome === 'delivered') {
        if (row.state !== 'accepted') continue
        row.state = 'delivered'
        await this.#w.run(
          'UPDATE recipients SET state = ?, delivered_at = ?, mx = ?, source_ip = ?, tls = ?, last_reply = ? WHERE box = ? AND id = ? AND idx = ?',
          ['delivered', at, str(r.mx) ?? null, str(r.sourceIp) ?? null, str(r.tls) ?? null, reply, ...where],
        )
        await this.#w.count(g, 'delivered')
        await this.#w.detail(g, 'latency', String(latencyBucket(at - row.accepted_at)))
        await this.#w.hook('delivered', id, g, row.idx, row.rcpt_mask, { mx: str(r.mx), tls: str(r.tls) })
      } else if (r.outcome === 'deferred') {
        if (row.state !== 'accepted') continue
        await this.#w.run('UPDATE recipients SET deferrals = deferrals + 1, last_reply = ? WHERE box = ? AND id = ? AND idx = ?', [reply, ...where])
        if (row.deferrals === 0) await this.#w.count(g, 'deferred')
        row.deferrals++
        await this.#w.hook('deferred', id, g, row.idx, row.rcpt_mask, { reply, attempts: row.deferrals })
      } else if (r.outcome === 'bounced') {
        if (row.state !== 'accepted') continue
        row.state = 'bounced'
        // The attempt's record names no SMTP command (typing the record from BoxEvent showed it read one that never
        // existed, #34): the reply's text classifies it, as it always did.
        const b = this.#classifier.classify({ text: reply })
        const paper = `bounced: ${b.category}`
        await this.#w.run(
          'UPDATE recipients SET state = ?, bounced_at = ?, bounce_reason = ?, bounce_hard = ?, last_reply = ?, paper_owed_at = ?, paper_reason = ? ' +
            'WHERE box = ? AND id = ? AND idx = ?',
          ['bounced', at, b.category, b.hard ? 1 : 0, reply, at, paper, ...where],
        )
        await this.#w.count(g, b.hard ? 'bounced_hard' : 'bounced_soft')
        await this.#w.detail(g, 'bounce', b.category)
        await this.#w.count(g, 'paper_owed')
        await this.#w.hook('bounced', id, g, row.idx, row.rcpt_mask, { reason: b.category, hard: b.hard, status: b.status, reply })
        await this.#w.hook('paper_owed', id, g, row.idx, row.rcpt_mask, { reason: paper })
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
    await this.#w.run('INSERT INTO early_records (box, id, seq, day, record) VALUES (?, ?, ?, ?, ?) ON CONFLICT (box, id, seq) DO NOTHING', [
      this.#ctx.box,
      id,
      r.seq,
      this.#ctx.dayOf(this.#w.time()),
      JSON.stringify(r),
    ])
  }

  /** The records that came before the mail's acceptance, applied now, in trail order. */
  async #applyEarly(id: string): Promise<void> {
    const waiting = await this.#w.tx.all<{ record: string }>('SELECT record FROM early_records WHERE box = ? AND id = ? ORDER BY seq', [this.#ctx.box, id])
    if (waiting.length === 0) return
    await this.#w.run('DELETE FROM early_records WHERE box = ? AND id = ?', [this.#ctx.box, id])
    const accepted = this.#w.record
    for (const w of waiting) {
      const r = JSON.parse(w.record) as AuditRecord
      // Applied as of its own time; its webhook events keep the acceptance's place (after it).
      this.#w.record = { ...r, seq: accepted.seq }
      if (r.type === 'delivery.attempt') await this.#attempt({ ...r, seq: accepted.seq })
      else if (r.type === 'spool.final') await this.#ended(id, r.outcome as 'expired' | 'removed')
    }
    this.#w.record = accepted
  }

  /** M8: a mail that ran out of time, or that an operator removed: every recipient not yet final owes paper. */
  async #ended(id: string, outcome: 'expired' | 'removed'): Promise<void> {
    const at = this.#w.time()
    const paper = outcome === 'expired' ? 'expired' : 'removed by an operator'
    const rows = await this.#w.rows(id)
    if (rows.length === 0) return this.#early(id, this.#w.record)
    for (const row of rows) {
      if (row.state !== 'accepted') continue
      const g = group(row)
      await this.#w.run(`UPDATE recipients SET state = ?, ${outcome}_at = ?, paper_owed_at = ?, paper_reason = ? WHERE box = ? AND id = ? AND idx = ?`, [
        outcome,
        at,
        at,
        paper,
        this.#ctx.box,
        id,
        row.idx,
      ])
      await this.#w.count(g, outcome)
      await this.#w.count(g, 'paper_owed')
      await this.#w.hook(outcome, id, g, row.idx, row.rcpt_mask, {})
      await this.#w.hook('paper_owed', id, g, row.idx, row.rcpt_mask, { reason: paper })
    }
  }
}
