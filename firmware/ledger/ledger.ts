import { hostname } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Clock } from '../../hal/clock.ts'
import { recordsAfter } from '../audit/replay.ts'
import type { AuditTrail } from '../audit/trail.ts'
import type { Component } from '../component.ts'
import type { Config } from '../config/load.ts'
import type { EventSink } from '../events.ts'
import type { Logger } from '../log.ts'
import { boxError } from '../box-errors.ts'
import { Classifier, rulesWith } from '../return-path/classify.ts'
import { LedgerApplier, type AuditRecord } from './apply.ts'
import { localTimeFormatter } from './export.ts'
import { openPostgres } from './postgres.ts'
import { createSchema } from './schema.ts'
import { SqliteStore, type LedgerStore, type Tx } from './store.ts'

/** Records per transaction: a trail group is applied whole unless it is larger than this. */
const CHUNK = 1000
/** Lines held in memory while the ledger is behind; past this it reads them from the trail instead. */
const MAX_QUEUED = 50_000

/** Where a box's ledger is: its own SQLite file, or the firm's PostgreSQL. */
export async function openLedgerStore(config: Config, options: { readOnly?: boolean } = {}): Promise<LedgerStore> {
  if (config.reports.postgres.url) return openPostgres(config.reports.postgres)
  return new SqliteStore(ledgerPath(config), options)
}

export const ledgerPath = (config: Config) => join(config.dataDir, 'reports', 'ledger.sqlite')

/** The id this box's rows carry (several boxes may share one PostgreSQL ledger). */
export const boxIdOf = (config: Config) => config.reports.boxId || hostname()

/** The reporting day of a time in the firm's zone, `YYYY-MM-DD` (the date of its local time, as exports show it). */
export function dayFormatter(timeZone: string): (ms: number) => string {
  const local = localTimeFormatter(timeZone)
  return (ms) => local(ms).slice(0, 10)
}

/**
 * The statement ledger (M8, M9, S6): a view of the audit trail, kept current
 * from each group of records the trail writes — one transaction per group —
 * and caught up from the trail's files after a restart, a crash or a spell
 * in which its store could not be written (the trail is the source of
 * truth; `npm run reports -- rebuild` makes the ledger again from it). It never
 * holds up mail: records wait in memory up to a bound, then are read back
 * from the trail when the ledger can write again.
 */
export class Ledger implements Component {
  readonly name = 'reports'
  readonly #config: Config
  readonly #log: Logger
  readonly #trail: AuditTrail
  readonly #events: EventSink
  readonly #clock: Clock
  readonly #box: string
  readonly #dayOf: (ms: number) => string
  #store: LedgerStore | undefined
  #applier: LedgerApplier
  #queue: string[][] = []
  #queued = 0
  /** The trail has records the ledger has not read: catch up from the files before the queue. */
  #behind = true
  #applied = 0
  #pumping: Promise<void> | undefined
  #stopping = false
  #retentionTimer: NodeJS.Timeout | undefined
  #failing = false
  readonly #waiters: { seq: number; resolve: () => void }[] = []
  readonly #appliedListeners: (() => void)[] = []

  constructor(deps: { config: Config; log: Logger; trail: AuditTrail; events: EventSink; clock: Clock }) {
    this.#config = deps.config
    this.#log = deps.log.child({ component: 'reports' })
    this.#trail = deps.trail
    this.#events = deps.events
    this.#clock = deps.clock
    this.#box = boxIdOf(deps.config)
    this.#dayOf = dayFormatter(deps.config.reports.timeZone)
    this.#applier = new LedgerApplier({
      box: this.#box,
      dayOf: this.#dayOf,
      webhooks: deps.config.reports.webhooks.endpoints.map((e) => ({ url: e.url, events: e.events })),
      // M8: a refusal during delivery is reported by the same rules delivery decided it with, the firm's first.
      classifier: new Classifier(rulesWith(deps.config.returnPath.rulesFile || undefined)),
    })
    deps.trail.onAppend((lines) => this.#enqueue(lines))
  }

  /** The firm's statement id and the acceptance time of a queue id, for a notice about it (M8). */
  async statementFacts(id: string): Promise<{ statementId: string | undefined; acceptedAt: number } | undefined> {
    const row = await this.store.get<{ statement_id: string | null; accepted_at: number | null }>(
      'SELECT statement_id, accepted_at FROM statements WHERE box = ? AND id = ?',
      [this.#box, id],
    )
    return row ? { statementId: row.statement_id ?? undefined, acceptedAt: Number(row.accepted_at ?? 0) } : undefined
  }

  get store(): LedgerStore {
    if (!this.#store) throw boxError('EINTERNAL', 'the ledger is not started')
    return this.#store
  }

  get box(): string {
    return this.#box
  }

  /** The last audit record applied. */
  get appliedSeq(): number {
    return this.#applied
  }

  async start(): Promise<void> {
    if (!this.#config.reports.enabled) return void this.#log.info('reports are off: no ledger is kept')
    this.#store = await openLedgerStore(this.#config)
    await createSchema(this.#store)
    const meta = await this.#store.get<{ value: string }>('SELECT value FROM ledger_meta WHERE box = ? AND key = ?', [this.#box, 'applied_seq'])
    this.#applied = Number(meta?.value ?? 0)
    this.#log.info({ appliedSeq: this.#applied, trailSeq: this.#trail.head.seq, store: this.#store.dialect }, 'ledger opened; catching up from the audit trail')
    this.#kick()
    this.#retentionTimer = setInterval(
      () => void this.retention().catch((err: Error) => this.#log.error({ err: err.message }, 'ledger retention failed')),
      3_600_000,
    )
    this.#retentionTimer.unref()
    void this.retention().catch((err: Error) => this.#log.error({ err: err.message }, 'ledger retention failed'))
  }

  async stop(): Promise<void> {
    // What the trail has written by now goes in before the store closes (the next start would catch up anyway,
    // but a report read while the box is stopped should count it).
    if (this.#store) await Promise.race([this.caughtUp(), new Promise((r) => setTimeout(r, 5000).unref())])
    this.#stopping = true
    clearInterval(this.#retentionTimer)
    await this.#pumping
    await this.#store?.close()
    this.#store = undefined
  }

  /** Called after each transaction the ledger commits (the webhook sender looks at the outbox then). */
  onApplied(listener: () => void): void {
    this.#appliedListeners.push(listener)
  }

  /** Resolves once every record up to `seq` (default: all the trail has written) is in the ledger. */
  caughtUp(seq = this.#trail.head.seq): Promise<void> {
    if (this.#applied >= seq) return Promise.resolve()
    return new Promise((resolve) => this.#waiters.push({ seq, resolve }))
  }

  /**
   * S13: deletes statement and recipient rows submitted before `reports.retentionDays`
   * ago (counts per day stay: they identify no one) and records how many in the audit trail.
   */
  async retention(): Promise<void> {
    const store = this.#store
    if (!store) return
    const before = this.#dayOf(this.#clock.now() - this.#config.reports.retentionDays * 86_400_000)
    const [recipientRows, statementRows] = await store.transaction(async (tx) => [
      await tx.run('DELETE FROM recipients WHERE box = ? AND day < ?', [this.#box, before]),
      await tx.run('DELETE FROM statements WHERE box = ? AND day < ?', [this.#box, before]),
      await tx.run('DELETE FROM early_records WHERE box = ? AND day < ?', [this.#box, before]),
      await tx.run('DELETE FROM unmatched_reports WHERE box = ? AND day < ?', [this.#box, before]),
    ])
    if (recipientRows || statementRows) {
      this.#log.info({ statementRows, recipientRows, before }, 'ledger rows past retention deleted')
      this.#events.emit({ type: 'reports.retention', statementRows, recipientRows, before })
    }
  }

  /**
   * Makes the ledger again from the whole trail (the box stopped): this box's rows are
   * deleted and every record applied in order, without webhooks (those went out when
   * the events happened). `progress` is called with records applied so far.
   */
  static async rebuild(config: Config, trailDir: string, progress: (records: number, seq: number) => void = () => {}): Promise<number> {
    const store = await openLedgerStore(config)
    try {
      await createSchema(store)
      const box = boxIdOf(config)
      await store.transaction(async (tx) => {
        for (const table of [
          'recipients',
          'statements',
          'daily',
          'daily_detail',
          'refused_tags',
          'early_records',
          'outbox',
          'unmatched_reports',
          'ledger_meta',
        ])
          await tx.run(`DELETE FROM ${table} WHERE box = ?`, [box])
      })
      const applier = new LedgerApplier({ box, dayOf: dayFormatter(config.reports.timeZone), webhooks: [] })
      let n = 0
      let batch: { seq: number; line: string }[] = []
      const flush = async () => {
        await applyBatch(store, applier, box, batch)
        n += batch.length
        progress(n, batch.at(-1)?.seq ?? 0)
        batch = []
      }
      for await (const r of recordsAfter(trailDir, 0)) {
        batch.push(r)
        if (batch.length >= CHUNK * 5) await flush()
      }
      if (batch.length) await flush()
      return n
    } finally {
      await store.close()
    }
  }

  #enqueue(lines: readonly string[]): void {
    // Not started (or reports off): the start catches up from the trail's files.
    if (!this.#store) return
    if (this.#queued + lines.length > MAX_QUEUED) {
      // Memory stays bounded: these records are read back from the trail once the ledger can write.
      this.#queue = []
      this.#queued = 0
      this.#behind = true
    } else {
      this.#queue.push([...lines])
      this.#queued += lines.length
    }
    this.#kick()
  }

  #kick(): void {
    if (this.#pumping || !this.#store || this.#stopping) return
    this.#pumping = this.#pump().finally(() => {
      this.#pumping = undefined
      if ((this.#queue.length || this.#behind) && !this.#stopping) this.#kick()
    })
  }

  async #pump(): Promise<void> {
    const store = this.#store!
    let wait = 500
    while (!this.#stopping) {
      try {
        if (this.#behind) {
          // Lines queued from now on are also in the files; the catch-up reads up to where they start.
          this.#behind = false
          this.#queue = []
          this.#queued = 0
          let batch: { seq: number; line: string }[] = []
          for await (const r of recordsAfter(this.#trail.dir, this.#applied)) {
            batch.push(r)
            if (batch.length >= CHUNK) {
              await this.#apply(store, batch)
              batch = []
              if (this.#stopping) return
            }
          }
          if (batch.length) await this.#apply(store, batch)
        }
        const lines = this.#queue.shift()
        if (!lines) break
        this.#queued -= lines.length
        const records = lines.map((line) => ({ seq: seqOf(line), line })).filter((r) => r.seq > this.#applied)
        for (let i = 0; i < records.length; i += CHUNK) await this.#apply(store, records.slice(i, i + CHUNK))
        wait = 500
      } catch (err) {
        // The store cannot be written (PostgreSQL away, disk full): read back from the trail later.
        if (!this.#failing)
          this.#log.error(
            { err: (err as Error).message, appliedSeq: this.#applied },
            'the ledger cannot be written; it catches up from the audit trail when it can',
          )
        this.#failing = true
        this.#behind = true
        await sleep(wait)
        wait = Math.min(wait * 2, 30_000)
      }
    }
  }

  async #apply(store: LedgerStore, batch: readonly { seq: number; line: string }[]): Promise<void> {
    const fresh = batch.filter((r) => r.seq > this.#applied)
    if (fresh.length === 0) return
    await applyBatch(store, this.#applier, this.#box, fresh)
    this.#applied = fresh.at(-1)!.seq
    if (this.#failing) this.#log.info({ appliedSeq: this.#applied }, 'the ledger is written again')
    this.#failing = false
    for (const l of this.#appliedListeners) l()
    for (let i = this.#waiters.length - 1; i >= 0; i--) {
      const w = this.#waiters[i]!
      if (w.seq <= this.#applied) {
        this.#waiters.splice(i, 1)
        w.resolve()
      }
    }
  }
}

/** One transaction: the records, then the sequence number they reach (the benchmark calls it too). */
export async function applyBatch(store: LedgerStore, applier: LedgerApplier, box: string, batch: readonly { seq: number; line: string }[]): Promise<void> {
  await store.transaction(async (tx: Tx) => {
    for (const r of batch) await applier.apply(tx, JSON.parse(r.line) as AuditRecord)
    await tx.run('INSERT INTO ledger_meta (box, key, value) VALUES (?, ?, ?) ON CONFLICT (box, key) DO UPDATE SET value = excluded.value', [
      box,
      'applied_seq',
      String(batch.at(-1)!.seq),
    ])
  })
}

function seqOf(line: string): number {
  // Records start {"seq":N,…
  const end = line.indexOf(',')
  return Number(line.slice(7, end))
}
