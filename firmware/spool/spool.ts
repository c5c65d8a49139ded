import { randomBytes } from 'node:crypto'
import { mkdirSync, statfsSync } from 'node:fs'
import { open, opendir, readdir, readFile, rename, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import type { Clock } from '../../hal/clock.ts'
import { HsmError, type Hsm } from '../../hal/hsm/index.ts'
import type { Component } from '../component.ts'
import type { Config } from '../config/load.ts'
import { GatewayError } from '../errors.ts'
import type { EventSink } from '../events.ts'
import type { Logger } from '../log.ts'
import type { Handoff, Submitted } from '../pipeline/handoff.ts'
import { SpoolIndex } from './index.ts'
import { Journal, type JournalState } from './journal.ts'
import { decodeRecord, readHeader, RecordError, writeRecord, type SpooledMail } from './record.ts'

export type SpoolState = 'queued' | 'inflight' | 'deferred' | 'held'
/** `removed`: taken out of the queue by an operator (held first), with a notice to the firm. */
export type FinalOutcome = 'delivered' | 'bounced' | 'expired' | 'removed'

export interface SpoolEntry {
  id: string
  epoch: string
  created: number
  state: SpoolState
  attempts: number
  nextAttemptAt: number
}

/**
 * Recipients of a mail that need no more attempts, as indexes into its
 * envelope's recipient list (the journal is clear text: never addresses).
 * Only a mail with several recipients, some final and some not, has any.
 */
export interface RecipientsDone {
  readonly delivered: readonly number[]
  readonly bounced: readonly number[]
}

/** `0,2;1`: delivered indexes, then bounced ones. */
export function encodeDone(d: RecipientsDone): string {
  return `${d.delivered.join(',')};${d.bounced.join(',')}`
}

export function decodeDone(text: string): RecipientsDone {
  const [delivered = '', bounced = ''] = text.split(';')
  const list = (x: string) => (x ? x.split(',').map(Number).filter((n) => Number.isInteger(n) && n >= 0) : [])
  return { delivered: list(delivered), bounced: list(bounced) }
}

export const epochKeyLabel = (epoch: string) => `spool/epoch/${epoch}`
const EPOCH_PREFIX = 'spool/epoch/'

/** Record file name: the id, epoch and creation time, so a restart can index without reading files. */
const fileName = (e: { id: string; epoch: string; created: number }) => `${e.id}~${e.epoch}~${e.created.toString(36)}.rec`
/** 16 shard directories: few enough that concurrent writers share directory fsyncs, enough to keep directories small. */
const shardOf = (id: string) => (id.charCodeAt(0) & 15).toString(16)

/**
 * The encrypted durable spool (M10, S9, S12, S13).
 *
 * Write path: each mail is encrypted with a fresh AES-256-GCM data key, the
 * data key is wrapped by the current epoch's key in the HSM, and the record is
 * written to a temporary file, fdatasync'd, renamed into place and its
 * directory fsync'd — all before the submission server answers 250.
 * Concurrent writers share directory fsyncs and the journal's fdatasync
 * (group commit), and their file syncs run in parallel.
 *
 * Final state: the journal records it, the record is unlinked, and when the
 * last message of an epoch that has ended is final, the epoch key is destroyed
 * in the HSM: no remnant of that epoch can be decrypted any more (crypto-shredding).
 *
 * Memory holds an index (id, epoch, state, attempts, next attempt), never
 * bodies; bodies are read from disk when delivery asks for them.
 */
export class Spool implements Component, Handoff {
  readonly name = 'spool'
  readonly #config: Config
  readonly #log: Logger
  readonly #hsm: Hsm
  readonly #events: EventSink
  readonly #clock: Clock
  readonly #dir: string
  readonly #quarantine: string
  readonly #journal: Journal
  readonly #index = new SpoolIndex()
  /** Partly delivered mails only (rare): which recipients are done, as journalled. */
  readonly #done = new Map<string, string>()
  readonly #epochCounts = new Map<string, number>()
  readonly #epochKeys = new Set<string>()
  readonly #epochKeyPending = new Map<string, Promise<void>>()
  readonly #shards = new Set<string>()
  readonly #dirSyncs = new Map<string, { running: Promise<void> | undefined; waiters: { resolve: () => void; reject: (e: Error) => void }[] }>()
  #disk = { at: -Infinity, ok: true }
  /** When each kind of alarm was last raised. */
  readonly #alarmed = new Map<'queue' | 'disk', number>()
  #timer: NodeJS.Timeout | undefined
  #verifying: Promise<void> | undefined
  #stopping = false

  constructor(deps: { config: Config; log: Logger; hsm: Hsm; events: EventSink; clock: Clock }) {
    this.#config = deps.config
    this.#log = deps.log.child({ component: 'spool' })
    this.#hsm = deps.hsm
    this.#events = deps.events
    this.#clock = deps.clock
    this.#dir = join(deps.config.dataDir, 'spool')
    this.#quarantine = join(this.#dir, 'quarantine')
    this.#journal = new Journal(join(this.#dir, 'journal'))
  }

  get size(): number {
    return this.#index.size
  }

  /** Rebuilds the index from record names and the journal; resumes where the box stopped. */
  async start(): Promise<void> {
    const started = this.#clock.now()
    mkdirSync(this.#quarantine, { recursive: true, mode: 0o700 })
    const journal = await this.#journal.load()
    const finals: string[] = []
    let torn = 0
    for (const shard of await readdir(this.#dir, { withFileTypes: true })) {
      if (!shard.isDirectory() || shard.name === 'quarantine') continue
      const shardDir = join(this.#dir, shard.name)
      // Streamed in batches: no array of every name in a large directory.
      for await (const dirent of await opendir(shardDir, { bufferSize: 256 })) {
        const name = dirent.name
        if (name.endsWith('.tmp')) {
          // Never acknowledged: the crash came before rename, so no 250 was sent for it.
          await unlink(join(shardDir, name))
          torn++
          continue
        }
        const m = /^([A-Za-z0-9_-]+)~([0-9A-Za-z]+)~([0-9a-z]+)\.rec$/.exec(name)
        if (!m) continue
        const [, id, epoch, created36] = m as unknown as [string, string, string, string]
        const j = journal.get(id)
        if (j !== undefined && j !== 'queued' && j.state === 'final') {
          finals.push(join(shardDir, name))
          continue
        }
        const st = j === undefined || j === 'queued' ? undefined : j
        if (st?.done) this.#done.set(id, st.done)
        const created = parseInt(created36, 36)
        this.#index.set({
          id,
          epoch,
          created,
          state: st?.state === 'held' ? 'held' : st ? 'deferred' : 'queued',
          attempts: st?.attempts ?? 0,
          nextAttemptAt: st?.nextAttemptAt ?? created,
        })
        this.#epochCounts.set(epoch, (this.#epochCounts.get(epoch) ?? 0) + 1)
      }
    }
    // Final in the journal but still on disk: the crash came between journal and unlink.
    for (const f of finals) await unlink(f)
    // Only entries with a journal state are materialised (a million queued ones would be garbage).
    await this.#journal.compact(
      this.#index
        .select(Infinity, (state) => state !== 'queued')
        .map((e) => [e.id, { state: e.state as JournalState['state'], attempts: e.attempts, nextAttemptAt: e.nextAttemptAt, done: this.#done.get(e.id) }]),
    )
    await this.#shredEndedEpochs()
    this.#log.info({ queued: this.#index.size, epochs: this.#epochCounts.size, removedFinal: finals.length, removedTorn: torn, ms: this.#clock.now() - started }, 'spool ready')
    this.#timer = setInterval(() => {
      void this.#shredEndedEpochs().catch((err: unknown) => this.#log.error({ err }, 'epoch check failed'))
      this.checkAlarms()
    }, 60_000)
    this.#timer.unref()
    if (this.#config.spool.verifyOnStart) this.#verifying = this.#verifyAll()
  }

  async stop(): Promise<void> {
    this.#stopping = true
    clearInterval(this.#timer)
    await this.#verifying
    await this.#journal.close()
  }

  /** Handoff: the mail is durable (and encrypted) when this resolves, and only then. */
  async accept(mail: Submitted): Promise<void> {
    this.#checkLimits()
    const id = mail.envelope.id
    const created = this.#clock.now()
    const epoch = this.#epochAt(created)
    const label = epochKeyLabel(epoch)
    const dataKey = randomBytes(32)
    try {
      let wrapped: { iv: Buffer; ciphertext: Buffer }
      try {
        await this.#ensureEpochKey(epoch)
        wrapped = await this.#hsm.keys.encrypt(label, dataKey, Buffer.from(id))
      } catch (err) {
        if (err instanceof HsmError) throw new GatewayError('EHSM_UNAVAILABLE', undefined, { cause: err })
        throw err
      }
      const shardDir = join(this.#dir, shardOf(id))
      const final = join(shardDir, fileName({ id, epoch, created }))
      const tmp = `${final}.tmp`
      if (!this.#shards.has(shardDir)) {
        mkdirSync(shardDir, { recursive: true, mode: 0o700 })
        this.#shards.add(shardDir)
      }
      try {
        const fh = await open(tmp, 'wx', 0o600)
        try {
          // Encrypted slice by slice into the file: a large statement is not held twice.
          await writeRecord(fh, mail, { id, epoch, created }, dataKey, wrapped)
          await fh.datasync()
        } finally {
          await fh.close()
        }
        await rename(tmp, final)
        await this.#syncDir(shardDir)
      } catch (err) {
        await unlink(tmp).catch(() => {})
        await unlink(final).catch(() => {})
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'ENOSPC' || code === 'EDQUOT') {
          this.#disk = { at: this.#clock.now(), ok: false }
          this.checkAlarms()
          throw new GatewayError('EQUEUE_DISK_FULL', undefined, { cause: err })
        }
        throw err
      }
    } finally {
      dataKey.fill(0)
    }
    this.#index.set({ id, epoch, created, state: 'queued', attempts: 0, nextAttemptAt: created })
    this.#epochCounts.set(epoch, (this.#epochCounts.get(epoch) ?? 0) + 1)
    this.#events.emit({ type: 'spool.queued', id, epoch, bytes: mail.message.length })
  }

  entry(id: string): SpoolEntry | undefined {
    return this.#index.get(id)
  }

  /**
   * Up to `limit` messages due at `now`, earliest first, marked in flight (in
   * memory: after a crash in-flight is queued again). O(log n) a message.
   */
  due(now: number, limit: number): SpoolEntry[] {
    return this.#index.claimDue(now, limit)
  }

  /** Decrypts a spooled message (unwrapping its key in the HSM). A bad record is quarantined. */
  async read(id: string): Promise<SpooledMail> {
    const e = this.#mustGet(id)
    const path = this.#path(e)
    const record = await readFile(path)
    try {
      const { header } = readHeader(record)
      if (header.id !== id) throw new RecordError('record id does not match its file name')
      const key = await this.#hsm.keys.decrypt(epochKeyLabel(e.epoch), Buffer.from(header.wrapIv, 'base64'), Buffer.from(header.wrapCt, 'base64'), Buffer.from(id))
      try {
        return decodeRecord(record, key)
      } finally {
        key.fill(0)
      }
    } catch (err) {
      const bad = err instanceof RecordError || (err instanceof HsmError && err.code === 'EHSM_DATA_INVALID')
      if (bad) await this.#quarantineRecord(e, (err as Error).message)
      throw err
    }
  }

  /** Last resort when the journal cannot be written: due again at `at`, in memory only (a restart restores the journalled state). */
  requeueInMemory(id: string, at: number): void {
    if (this.#index.has(id)) this.#index.update(id, { state: 'deferred', nextAttemptAt: at })
  }

  /** Which recipients of a partly delivered mail need no more attempts (undefined: none yet). */
  recipientsDone(id: string): RecipientsDone | undefined {
    const d = this.#done.get(id)
    return d === undefined ? undefined : decodeDone(d)
  }

  /**
   * Next attempt at `nextAttemptAt`. `done` (with several recipients) names
   * those that are final now, so the retry goes to the others only; it is
   * journalled with the deferral, so a restart does not send them again.
   */
  async defer(id: string, nextAttemptAt: number, reason: string, done?: RecipientsDone): Promise<void> {
    const e = this.#mustGet(id)
    const d = done && (done.delivered.length || done.bounced.length) ? encodeDone(done) : this.#done.get(id)
    await this.#journal.append(id, 'deferred', e.attempts + 1, nextAttemptAt, d)
    if (d !== undefined) this.#done.set(id, d)
    this.#index.update(id, { attempts: e.attempts + 1, nextAttemptAt, state: 'deferred' })
    this.#events.emit({ type: 'spool.deferred', id, attempts: e.attempts + 1, nextAttemptAt, reason })
  }

  async hold(id: string): Promise<void> {
    const e = this.#mustGet(id)
    await this.#journal.append(id, 'held', e.attempts, e.nextAttemptAt, this.#done.get(id))
    this.#index.update(id, { state: 'held' })
    this.#events.emit({ type: 'spool.held', id })
  }

  async release(id: string): Promise<void> {
    await this.#dueNow(id, 'spool.released')
  }

  /**
   * Final state (M10): journalled first, then the record is unlinked; if this
   * was the last message of an ended epoch, the epoch key is destroyed.
   */
  async finish(id: string, outcome: FinalOutcome, reason: string): Promise<void> {
    const e = this.#mustGet(id)
    await this.#journal.append(id, 'final', e.attempts, 0)
    // Index and event together, with no await between: whoever sees the
    // message gone from the queue also sees its final event.
    this.#index.delete(id)
    this.#done.delete(id)
    this.#events.emit({ type: 'spool.final', id, outcome, reason })
    await unlink(this.#path(e)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err
    })
    this.#events.emit({ type: 'spool.record_shredded', id })
    await this.#released(e.epoch)
  }

  /** Up to `limit` entries in index order, optionally only those in `state` (for the operator). */
  list(limit: number, state?: SpoolState): SpoolEntry[] {
    return this.#index.select(limit, (s) => state === undefined || s === state)
  }

  /** A deferred mail becomes due now (an operator who knows the destination is back). */
  async retryNow(id: string): Promise<void> {
    await this.#dueNow(id, 'spool.retried')
  }

  /** Due at once (journalled first), keeping attempts and the recipients already done. */
  async #dueNow(id: string, event: 'spool.released' | 'spool.retried'): Promise<void> {
    const e = this.#mustGet(id)
    const now = this.#clock.now()
    await this.#journal.append(id, 'deferred', e.attempts, now, this.#done.get(id))
    this.#index.update(id, { state: 'deferred', nextAttemptAt: now })
    this.#events.emit({ type: event, id })
  }

  /**
   * S11: warns before the limits bite — the queue near `maxMessages`, free disk
   * near the reserve — so operators act before submissions get 452. Each kind
   * at most once an hour while it lasts. Called every minute.
   */
  checkAlarms(): void {
    const c = this.#config.spool
    const now = this.#clock.now()
    const raise = (kind: 'queue' | 'disk', value: number, limit: number, message: string) => {
      if (now - (this.#alarmed.get(kind) ?? -Infinity) < 3_600_000) return
      this.#alarmed.set(kind, now)
      this.#log.error({ kind, value, limit }, message)
      this.#events.emit({ type: 'spool.alarm', kind, value, limit })
    }
    const queueLimit = Math.floor((c.maxMessages * c.alarmPercent) / 100)
    if (this.#index.size >= queueLimit) raise('queue', this.#index.size, c.maxMessages, 'spool is filling up: submissions will be refused at spool.maxMessages')
    const freePercent = this.#freePercent()
    if (freePercent < 2 * c.reservePercent) raise('disk', Math.floor(freePercent * 10) / 10, c.reservePercent, 'spool disk is running low: submissions will be refused below spool.reservePercent free')
  }

  /** Counts by state, for status pages and metrics. */
  stats(): Record<SpoolState, number> & { total: number } {
    return { ...this.#index.countByState(), total: this.#index.size }
  }

  #checkLimits(): void {
    // S11: the alarms are looked at whenever the limits are (at most once a second), so an alarm
    // always comes before the first 452 — also when a disk fills faster than the minute check.
    if (this.#index.size >= this.#config.spool.maxMessages) {
      this.checkAlarms()
      throw new GatewayError('EQUEUE_FULL')
    }
    const now = this.#clock.now()
    if (now - this.#disk.at > 1000) {
      this.#disk = { at: now, ok: this.#freePercent() >= this.#config.spool.reservePercent }
      this.checkAlarms()
    }
    if (!this.#disk.ok) {
      this.checkAlarms()
      throw new GatewayError('EQUEUE_DISK_FULL')
    }
  }

  /** Free space on the spool's filesystem, as the unprivileged box sees it (bavail). */
  #freePercent(): number {
    const st = statfsSync(this.#dir)
    return (st.bavail / st.blocks) * 100
  }

  #epochAt(t: number): string {
    const ms = this.#config.spool.epochSeconds * 1000
    return Math.floor(t / ms).toString(36)
  }

  /** One creation per epoch: the first submissions of a new epoch arrive together and must not race to create its key. */
  #ensureEpochKey(epoch: string): Promise<void> {
    if (this.#epochKeys.has(epoch)) return Promise.resolve()
    let pending = this.#epochKeyPending.get(epoch)
    if (!pending) {
      pending = (async () => {
        if (await this.#hsm.keys.ensureSecretKey(epochKeyLabel(epoch), 'aes-256')) this.#events.emit({ type: 'spool.epoch_key_created', epoch })
        this.#epochKeys.add(epoch)
      })().finally(() => this.#epochKeyPending.delete(epoch))
      this.#epochKeyPending.set(epoch, pending)
    }
    return pending
  }

  async #released(epoch: string): Promise<void> {
    const n = (this.#epochCounts.get(epoch) ?? 1) - 1
    if (n > 0) return void this.#epochCounts.set(epoch, n)
    this.#epochCounts.delete(epoch)
    if (epoch !== this.#epochAt(this.#clock.now())) await this.#destroyEpoch(epoch)
  }

  /** Destroys the keys of epochs that have ended and hold no live message (also ones left from before a restart). */
  async #shredEndedEpochs(): Promise<void> {
    const current = this.#epochAt(this.#clock.now())
    let labels: string[]
    try {
      labels = (await this.#hsm.keys.list()).filter((k) => k.kind === 'secret' && k.label.startsWith(EPOCH_PREFIX)).map((k) => k.label)
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'cannot list epoch keys (HSM unavailable); will retry')
      return
    }
    for (const label of labels) {
      const epoch = label.slice(EPOCH_PREFIX.length)
      if (epoch !== current && !this.#epochCounts.has(epoch)) await this.#destroyEpoch(epoch)
    }
  }

  async #destroyEpoch(epoch: string): Promise<void> {
    try {
      const n = await this.#hsm.keys.destroy(epochKeyLabel(epoch))
      this.#epochKeys.delete(epoch)
      if (n > 0) {
        this.#events.emit({ type: 'spool.epoch_key_destroyed', epoch })
        this.#log.info({ epoch }, 'epoch key destroyed: its records can no longer be decrypted by anyone')
      }
    } catch (err) {
      // Retried by the periodic check; the key stays until it can be destroyed.
      this.#log.warn({ epoch, err: (err as Error).message }, 'epoch key not destroyed yet')
    }
  }

  async #quarantineRecord(e: SpoolEntry, reason: string): Promise<void> {
    const name = fileName(e)
    await rename(this.#path(e), join(this.#quarantine, name)).catch(() => {})
    this.#index.delete(e.id)
    this.#done.delete(e.id)
    this.#events.emit({ type: 'spool.quarantined', file: name, reason })
    this.#log.error({ id: e.id, reason }, 'spool record quarantined')
    await this.#released(e.epoch)
  }

  /** Reads and authenticates every record once after start, without holding up accepting or delivering. */
  async #verifyAll(): Promise<void> {
    let checked = 0
    let bad = 0
    for (const id of this.#index.ids()) {
      if (this.#stopping) return
      const e = this.#index.get(id)
      if (!e || e.state === 'inflight') continue
      try {
        await this.read(id)
        checked++
      } catch (err) {
        if (err instanceof RecordError || (err instanceof HsmError && err.code === 'EHSM_DATA_INVALID')) bad++
        else if (err instanceof HsmError) return void this.#log.warn({ err: err.message }, 'spool verification paused: HSM unavailable')
      }
      if (checked % 256 === 0) await new Promise((r) => setImmediate(r))
    }
    this.#log.info({ checked, quarantined: bad }, 'spool verification finished')
  }

  #mustGet(id: string): SpoolEntry {
    const e = this.#index.get(id)
    if (!e) throw new Error(`no spooled message ${id}`)
    return e
  }

  #path(e: SpoolEntry): string {
    return join(this.#dir, shardOf(e.id), fileName(e))
  }

  /** fsync of a directory, shared by everyone who renamed into it while the previous one ran. */
  #syncDir(dir: string): Promise<void> {
    let s = this.#dirSyncs.get(dir)
    if (!s) this.#dirSyncs.set(dir, (s = { running: undefined, waiters: [] }))
    const state = s
    return new Promise((resolve, reject) => {
      state.waiters.push({ resolve, reject })
      if (state.running) return
      state.running = (async () => {
        while (state.waiters.length) {
          await new Promise<void>((r) => setImmediate(r)) // let concurrent renames join this fsync
          const batch = state.waiters.splice(0)
          try {
            const fh = await open(dir, 'r')
            try {
              await fh.sync()
            } finally {
              await fh.close()
            }
            for (const w of batch) w.resolve()
          } catch (err) {
            for (const w of batch) w.reject(err as Error)
          }
        }
        state.running = undefined
      })()
    })
  }
}
