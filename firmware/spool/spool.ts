import { unlink } from 'node:fs/promises'
import { join } from 'node:path'
import type { Clock } from '../../hal/clock.ts'
import { HsmError, type Hsm } from '../../hal/hsm/index.ts'
import type { Component } from '../component.ts'
import type { Config } from '../config/load.ts'
import type { EventSink } from '../events.ts'
import type { Logger } from '../log.ts'
import type { Handoff, Submitted } from '../pipeline/handoff.ts'
import { boxError } from '../box-errors.ts'
import { EpochKeys } from './epochs.ts'
import { RecordFiles } from './record-files.ts'
import { SpoolIndex } from './index.ts'
import { Journal, type JournalState, type ProgressNote, type ProgressReplay } from './journal.ts'
import { SpoolLimits } from './limits.ts'
import { scanRecords, verifyRecords } from './recover.ts'
import { RecordError, writeRecord, type SpooledMail } from './record.ts'
import {
  checkTransition,
  decodeDone,
  encodeDone,
  encodeWait,
  type FinalOutcome,
  type ReceiptWait,
  type RecipientsDone,
  type SpoolEntry,
  type SpoolState,
} from './types.ts'

/**
 * The encrypted durable spool (M10, S9, S12, S13).
 *
 * Write path: each mail is encrypted with AES-256-GCM under a key of its own, derived from its epoch's data key (epochs.ts), and
 * written whole and durably (record-files.ts) before the submission server answers 250.
 * Final state: the journal records it, the record is unlinked, and when the last message of an epoch that has ended is final, the
 * epoch key is destroyed in the HSM: no remnant of that epoch can be decrypted any more (crypto-shredding).
 * Memory holds an index (id, epoch, state, attempts, next attempt), never bodies; bodies are read from disk when delivery asks.
 */
export class Spool implements Component, Handoff {
  readonly name = 'spool'
  readonly #config: Config
  readonly #log: Logger
  readonly #events: EventSink
  readonly #clock: Clock
  readonly #dir: string
  readonly #files: RecordFiles
  readonly #journal: Journal
  readonly #index = new SpoolIndex()
  /** Partly delivered mails only (rare): which recipients are done, as journalled. */
  readonly #done = new Map<string, string>()
  /** Awaiting statements (M11): how often each was sent, and when first. */
  readonly #waits = new Map<string, ReceiptWait>()
  /** #33: recipient transactions journalled (`progress`) no state line has closed yet: in flight, or after a crash, to be checked. */
  readonly #unconfirmed = new Map<string, ProgressNote[]>()
  readonly #epochs: EpochKeys
  readonly #limits: SpoolLimits
  #timer: NodeJS.Timeout | undefined
  #verifying: Promise<void> | undefined
  #stopping = false

  constructor(deps: { config: Config; log: Logger; hsm: Hsm; events: EventSink; clock: Clock }) {
    this.#config = deps.config
    this.#log = deps.log.child({ component: 'spool' })
    this.#events = deps.events
    this.#clock = deps.clock
    this.#dir = join(deps.config.dataDir, 'spool')
    this.#files = new RecordFiles(this.#dir)
    this.#journal = new Journal(join(this.#dir, 'journal'))
    this.#epochs = new EpochKeys({ ...deps, log: this.#log, epochSeconds: deps.config.spool.epochSeconds })
    this.#limits = new SpoolLimits({ ...deps, log: this.#log, dir: this.#dir, queued: () => this.#index.size })
  }

  get size(): number {
    return this.#index.size
  }

  /** Rebuilds the index from record names and the journal; resumes where the box stopped. */
  async start(): Promise<void> {
    const started = this.#clock.now()
    this.#files.prepare()
    const { states: journal, progress } = await this.#journal.load()
    const { finals, torn } = await scanRecords(this.#dir, journal, (entry, kept) => {
      if (kept.wait) this.#waits.set(entry.id, kept.wait)
      else if (kept.done) this.#done.set(entry.id, kept.done)
      // #33: transactions of an attempt the crash interrupted: those recipients are done.
      const notes = progress.get(entry.id)
      if (notes) {
        this.#unconfirmed.set(entry.id, notes)
        if (!kept.wait) this.#done.set(entry.id, notes.at(-1)!.done)
      }
      this.#index.set(entry)
      this.#epochs.hold(entry.epoch)
    })
    // Final in the journal but still on disk: the crash came between journal and unlink.
    for (const f of finals) await unlink(f)
    // Only entries with a journal state are materialised (a million queued ones would be garbage).
    await this.#journal.compact(
      this.#index
        .select(Infinity, (state) => state !== 'queued')
        .map((e) => [
          e.id,
          {
            state: e.state as JournalState['state'],
            attempts: e.attempts,
            nextAttemptAt: e.nextAttemptAt,
            done: e.state === 'awaiting' ? encodeWait(this.#waits.get(e.id)!) : this.#done.get(e.id),
          },
        ]),
      // Kept until the engine has checked them against the trail (`confirm`).
      this.#unconfirmed,
    )
    await this.#epochs.shredEnded()
    const ready = { queued: this.#index.size, epochs: this.#epochs.live, removedFinal: finals.length, removedTorn: torn }
    this.#log.info({ ...ready, ms: this.#clock.now() - started }, 'spool ready')
    this.#timer = setInterval(() => {
      void this.#epochs.shredEnded().catch((err: unknown) => this.#log.error({ err }, 'epoch check failed'))
      this.#limits.checkAlarms()
    }, 60_000)
    this.#timer.unref()
    if (this.#config.spool.verifyOnStart)
      this.#verifying = verifyRecords({
        ids: this.#index.ids(),
        // Gone meanwhile, or being delivered (delivery reads and checks it itself).
        skip: (id) => (this.#index.get(id)?.state ?? 'inflight') === 'inflight',
        read: (id) => this.read(id),
        stopping: () => this.#stopping,
        log: this.#log,
      })
  }

  async stop(): Promise<void> {
    this.#stopping = true
    clearInterval(this.#timer)
    await this.#verifying
    await this.#journal.close()
  }

  /** Handoff: the mail is durable (and encrypted) when this resolves, and only then. */
  async accept(mail: Submitted): Promise<void> {
    this.#limits.check()
    const created = this.#clock.now()
    const rec = { id: mail.envelope.id, epoch: this.#epochs.at(created), created }
    const { dataKey, keyRef } = await this.#epochs.newRecordKey(rec.epoch, rec.id)
    try {
      // Encrypted slice by slice into the file: a large statement is not held twice.
      await this.#limits.writing(() => this.#files.write(rec, (fh) => writeRecord(fh, mail, rec, dataKey, keyRef)))
    } finally {
      dataKey.fill(0)
    }
    this.#index.set({ ...rec, state: 'queued', attempts: 0, nextAttemptAt: created })
    this.#epochs.hold(rec.epoch)
    this.#events.emit({ type: 'spool.queued', id: rec.id, epoch: rec.epoch, bytes: mail.message.length })
  }

  entry(id: string): SpoolEntry | undefined {
    return this.#index.get(id)
  }

  /** Up to `limit` messages due at `now`, earliest first, marked in flight (in memory: after a crash in-flight is queued again). O(log n) a message. */
  due(now: number, limit: number): SpoolEntry[] {
    return this.#index.claimDue(now, limit)
  }

  /** #35: HSM work for the spool's keys since start: epoch data keys wrapped, data keys unwrapped (one each per epoch and start). */
  get keyUse(): { wraps: number; unwraps: number } {
    return { wraps: this.#epochs.wraps, unwraps: this.#epochs.unwraps }
  }

  /** Decrypts a spooled message (its epoch's data key unwrapped in the HSM once and kept). A bad record is quarantined. */
  async read(id: string): Promise<SpooledMail> {
    const e = this.#mustGet(id)
    try {
      return await this.#files.open(e, (header) => this.#epochs.recordKey(header))
    } catch (err) {
      const bad = err instanceof RecordError || (err instanceof HsmError && err.code === 'EHSM_DATA_INVALID')
      if (bad) await this.#quarantineRecord(e, err.message)
      throw err
    }
  }

  /**
   * M11: a delivered statement of a read-receipt class stays (encrypted under its epoch key) until `until`, when delivery looks at it
   * again (second send or paper owed), unless its read receipt ends it first. Journalled before it is acted on, like every state.
   */
  async awaitReceipt(id: string, until: number, wait: ReceiptWait, deadline: number): Promise<void> {
    const e = this.#mustGet(id)
    checkTransition(e, 'awaiting')
    await this.#journal.append(id, 'awaiting', e.attempts, until, encodeWait(wait))
    this.#unconfirmed.delete(id)
    this.#waits.set(id, wait)
    this.#done.delete(id)
    this.#move(e, 'awaiting', { nextAttemptAt: until })
    this.#events.emit({
      type: 'spool.awaiting_receipt',
      id,
      sends: wait.sends,
      until: new Date(until).toISOString(),
      deadline: new Date(deadline).toISOString(),
    })
  }

  /** Takes an awaiting statement out of the due queue (its read came): true if it was awaiting. */
  claimAwaiting(id: string): boolean {
    const e = this.#index.get(id)
    if (e?.state !== 'awaiting') return false
    this.#move(e, 'inflight')
    return true
  }

  /** M11: the read of a statement being sent again, journalled (due at once after a restart: it ends as read, not sent again). */
  async markRead(id: string): Promise<void> {
    const e = this.#index.get(id)
    const w = this.#waits.get(id)
    // Gone already (ended by the attempt in flight), or on its first send (the attempt ends it).
    if (!e || !w) return
    const read = { ...w, read: true }
    await this.#journal.append(id, 'awaiting', e.attempts, this.#clock.now(), encodeWait(read))
    // The second send in flight may have journalled its transaction: still unconfirmed after this line.
    await this.#restateNotes(id)
    this.#waits.set(id, read)
  }

  /** The sends of an awaiting statement (also while it is in flight for its second send), or undefined. */
  receiptWait(id: string): ReceiptWait | undefined {
    return this.#waits.get(id)
  }

  /**
   * Last resort when the journal cannot be written: a mail still in flight is due again at `at`, in memory only (a restart
   * restores the journalled state). One its attempt already moved on (awaiting its read receipt, held) keeps that state: the
   * move to `deferred` would be undeclared (found when the journal closed under an attempt at shutdown).
   */
  requeueInMemory(id: string, at: number): void {
    const e = this.#index.get(id)
    if (e?.state === 'inflight') this.#move(e, 'deferred', { nextAttemptAt: at })
  }

  /**
   * #33: one recipient transaction's outcome, durable in the journal when this resolves — as soon as the receiver's reply is read, before
   * anything else about the attempt. `done` is every recipient final so far (this one's included): a restart sends to the others only.
   */
  async progress(id: string, done: RecipientsDone, transaction: string, replay: ProgressReplay): Promise<void> {
    const note: ProgressNote = { done: encodeDone(done), transaction, at: this.#clock.now(), replay }
    await this.#journal.appendProgress(id, note)
    const notes = this.#unconfirmed.get(id)
    if (notes) notes.push(note)
    else this.#unconfirmed.set(id, [note])
    if (!this.#waits.has(id)) this.#done.set(id, note.done)
  }

  /** The transactions of an interrupted attempt (after a restart) no state line has confirmed, by mail. */
  unconfirmed(): [string, readonly ProgressNote[]][] {
    return [...this.#unconfirmed].filter(([id]) => this.#index.has(id))
  }

  /** How many transactions of the mail's attempt are journalled and unconfirmed (they number the next). */
  unconfirmedCount(id: string): number {
    return this.#unconfirmed.get(id)?.length ?? 0
  }

  /** The recipients an unconfirmed attempt finished (also for an awaiting statement's second send), or undefined. */
  unconfirmedDone(id: string): RecipientsDone | undefined {
    const last = this.#unconfirmed.get(id)?.at(-1)
    return last && decodeDone(last.done)
  }

  /** Which recipients of a partly delivered mail need no more attempts (undefined: none yet). */
  recipientsDone(id: string): RecipientsDone | undefined {
    const d = this.#done.get(id)
    return d === undefined ? undefined : decodeDone(d)
  }

  /**
   * Next attempt at `nextAttemptAt`. `done` (with several recipients) names those that are final now, so the retry goes to the others
   * only; it is journalled with the deferral, so a restart does not send them again.
   */
  async defer(id: string, nextAttemptAt: number, reason: string, done?: RecipientsDone): Promise<void> {
    const e = this.#mustGet(id)
    const d = done && (done.delivered.length || done.bounced.length) ? encodeDone(done) : this.#done.get(id)
    // Held by an operator while its attempt was in flight: it stays held.
    const state = e.state === 'held' ? 'held' : 'deferred'
    checkTransition(e, state)
    await this.#journal.append(id, state, e.attempts + 1, nextAttemptAt, d)
    this.#unconfirmed.delete(id)
    if (d !== undefined) this.#done.set(id, d)
    this.#move(e, state, { attempts: e.attempts + 1, nextAttemptAt })
    this.#events.emit({ type: 'spool.deferred', id, attempts: e.attempts + 1, nextAttemptAt, reason })
  }

  async hold(id: string): Promise<void> {
    const e = this.#mustGet(id)
    checkTransition(e, 'held') // not an awaiting statement: it was delivered, there is nothing to hold
    await this.#journal.append(id, 'held', e.attempts, e.nextAttemptAt, this.#done.get(id))
    // An attempt in flight keeps its notes unconfirmed: they are written again after this line.
    await this.#restateNotes(id)
    this.#move(e, 'held')
    this.#events.emit({ type: 'spool.held', id })
  }

  async release(id: string): Promise<void> {
    await this.#dueNow(id, 'spool.released')
  }

  /** Final state (M10): journalled first, then the record is unlinked; the last message of an ended epoch destroys its key. */
  async finish(id: string, outcome: FinalOutcome, reason: string): Promise<void> {
    const e = this.#mustGet(id)
    checkTransition(e, 'final')
    // The final event is on disk (the audit trail) before the journal says final: the
    // ledger is made from the trail, and an expiry or removal is what makes a paper
    // statement owed (M8). A crash in between leaves the mail queued; it ends, and is
    // announced, again.
    this.#events.emit({ type: 'spool.final', id, outcome, reason })
    await this.#events.durable?.()
    await this.#journal.append(id, 'final', e.attempts, 0)
    this.#unconfirmed.delete(id)
    // Whoever sees the message gone from the queue has its final event already.
    this.#index.delete(id)
    this.#done.delete(id)
    this.#waits.delete(id)
    await unlink(this.#files.path(e)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err
    })
    this.#events.emit({ type: 'spool.record_shredded', id })
    await this.#epochs.release(e.epoch)
  }

  /** When the oldest mail in the queue was received (S11: queue age), or undefined when it is empty. */
  oldestCreated(): number | undefined {
    return this.#index.oldestCreated()
  }

  /** #33: the journal's writes, stamp to durable (ms): their percentiles and the last groups' own. */
  get journalWrites(): Pick<Journal, 'writes' | 'lineWrites' | 'recentWrites'> {
    return this.#journal
  }

  /** The mails received at or after `t` (a start's look at the last moments before a crash; O(n)). */
  createdSince(t: number): SpoolEntry[] {
    return this.#index.createdSince(t)
  }

  /** Up to `limit` queued mails (of one state, if given), after the first `offset`: a page of the queue. */
  list(limit: number, state?: SpoolState, offset = 0): SpoolEntry[] {
    return this.#index.select(limit, (s) => state === undefined || s === state, offset)
  }

  /** A deferred mail becomes due now (an operator who knows the destination is back). */
  async retryNow(id: string): Promise<void> {
    await this.#dueNow(id, 'spool.retried')
  }

  /** Due at once (journalled first), keeping attempts and the recipients already done. */
  async #dueNow(id: string, event: 'spool.released' | 'spool.retried'): Promise<void> {
    const e = this.#mustGet(id)
    checkTransition(e, 'deferred')
    const now = this.#clock.now()
    await this.#journal.append(id, 'deferred', e.attempts, now, this.#done.get(id))
    await this.#restateNotes(id)
    this.#move(e, 'deferred', { nextAttemptAt: now })
    this.#events.emit({ type: event, id })
  }

  /** A state line written while notes are unconfirmed confirms them on the next load: they are appended again after it. */
  async #restateNotes(id: string): Promise<void> {
    for (const n of this.#unconfirmed.get(id) ?? []) await this.#journal.appendProgress(id, n)
  }

  /** S11: the queue and disk alarms, looked at now (also every minute and with every submission). */
  checkAlarms(): void {
    this.#limits.checkAlarms()
  }

  /** Counts by state, for status pages and metrics. */
  stats(): Record<SpoolState, number> & { total: number } {
    return { ...this.#index.countByState(), total: this.#index.size }
  }

  async #quarantineRecord(e: SpoolEntry, reason: string): Promise<void> {
    const name = await this.#files.quarantine(e)
    this.#index.delete(e.id)
    this.#done.delete(e.id)
    this.#events.emit({ type: 'spool.quarantined', file: name, reason })
    this.#log.error({ id: e.id, reason }, 'spool record quarantined')
    await this.#epochs.release(e.epoch)
  }

  /** The state change itself, checked against the state the mail is in now (a journal write may have come between). */
  #move(e: SpoolEntry, to: SpoolState, patch: Partial<Pick<SpoolEntry, 'attempts' | 'nextAttemptAt'>> = {}): void {
    checkTransition(this.#index.get(e.id) ?? e, to)
    this.#index.update(e.id, { ...patch, state: to })
  }

  #mustGet(id: string): SpoolEntry {
    const e = this.#index.get(id)
    if (!e) throw boxError('ECONTROL_REFUSED', `no spooled message ${id}`)
    return e
  }
}
