import { mkdirSync } from 'node:fs'
import { open, stat, truncate, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { Clock } from '../../hal/clock.ts'
import type { Hsm } from '../../hal/hsm/index.ts'
import { appendWhole, fsyncDir, writeFileAtomic } from '../../hal/storage/files.ts'
import type { Component } from '../component.ts'
import type { Config } from '../config/load.ts'
import type { BoxEvent, EventSink } from '../events.ts'
import { CHECKPOINT_KEY_LABEL } from '../keys/labels.ts'
import type { Logger } from '../log.ts'
import { boxError } from '../box-errors.ts'
import {
  checkpointName,
  checkpointPayload,
  dayOf,
  endName,
  GENESIS,
  PUBLIC_KEY_FILE,
  recordHash,
  recordLine,
  recordLink,
  segmentName,
  type Checkpoint,
} from './record.ts'
import { Redactor } from './redact.ts'
import { buildMissingFilters, finishDay, removeExpired } from './rotation.ts'
import { dayEnd, lastLine, listSegments } from './segments.ts'

type Pending = { time: number; fields: Promise<Record<string, unknown>> }

/**
 * The tamper-evident audit trail (S6, S7, S13): every event of the box,
 * appended as a hash-chained JSON line, written and fsync'd in groups, with a
 * checkpoint signed in the HSM every `audit.checkpointEvery` records or
 * `audit.checkpointSeconds`. One segment per UTC day, compressed when the day
 * is over, deleted after `audit.retentionDays`. Recipients are stored only as
 * HMAC + masked form; events never carry content.
 *
 * The box has exactly one writer: this component. Readers (verification,
 * search, export, syslog forwarding) work from the files.
 */
export class AuditTrail implements Component, EventSink {
  readonly name = 'audit'
  readonly dir: string
  readonly #config: Config['audit']
  readonly #log: Logger
  readonly #hsm: Hsm
  readonly #clock: Clock
  #queue: Pending[] = []
  #started = false
  #stopping = false
  #seq = 0
  #lastTimeAtStart = 0
  #head = GENESIS
  #day: string | undefined
  #fh: FileHandle | undefined
  #flushTimer: NodeJS.Timeout | undefined
  #checkpointTimer: NodeJS.Timeout | undefined
  #flushing: Promise<boolean> | undefined
  #checkpointing: Promise<void> = Promise.resolve()
  #background: Promise<void>[] = []
  #checkpointed = 0
  #checkpointAsked = 0
  readonly #graceMs: number
  /** The last write failed (e.g. the disk is full); records wait in memory until it succeeds. */
  #failing = false
  #publicKeyWritten = false
  readonly #redactor: Redactor
  readonly #appendListeners: ((lines: readonly string[], lastSeq: number) => void)[] = []

  constructor(deps: { config: Config; log: Logger; hsm: Hsm; clock: Clock }) {
    this.dir = join(deps.config.dataDir, 'audit')
    this.#config = deps.config.audit
    this.#graceMs = deps.config.shutdown.graceMs
    this.#log = deps.log.child({ component: 'audit' })
    this.#hsm = deps.hsm
    this.#clock = deps.clock
    this.#redactor = new Redactor(deps.hsm, this.#log)
  }

  /** The time of the last record the trail had when it started (0 if it had none, or it could not be read). */
  get lastTimeAtStart(): number {
    return this.#lastTimeAtStart
  }

  /** Sequence number and hash of the last record written and fsync'd. */
  get head(): { seq: number; hash: string } {
    return { seq: this.#seq, hash: this.#head }
  }

  /**
   * Whether the box may take on more work that will need recording (S6: never lose a
   * record). False while records cannot be written (a full disk) or more than
   * `audit.maxBacklog` wait in memory: submission then answers 452 until the trail has
   * caught up, so the records waiting in memory stay bounded.
   */
  get accepting(): boolean {
    return !this.#failing && this.#queue.length < this.#config.maxBacklog
  }

  /** Records waiting to be written. */
  get backlog(): number {
    return this.#queue.length
  }

  /** Called after each group of records is on disk, with their lines (for forwarding). */
  onAppend(listener: (lines: readonly string[], lastSeq: number) => void): void {
    this.#appendListeners.push(listener)
  }

  emit(event: BoxEvent): void {
    if (this.#stopping && !this.#started) {
      this.#log.error({ type: event.type }, 'event after the audit trail stopped; not recorded')
      return
    }
    this.#queue.push({ time: this.#clock.now(), fields: this.#redactor.fields(event) })
    if (this.#started && !this.#flushTimer) this.#flushTimer = setTimeout(() => void this.flush(), this.#config.flushMs)
  }

  async start(): Promise<void> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    const torn = await this.#recover()
    this.#checkpointAsked = this.#seq
    await this.#writePublicKey().catch((err: Error) =>
      this.#log.error({ err: err.message }, 'could not export the checkpoint public key yet (HSM unavailable?); will retry'),
    )
    this.#started = true
    this.emit({ type: 'audit.started', lastSeq: this.#seq, tornBytes: torn })
    await this.#housekeeping()
    this.#inBackground(
      buildMissingFilters(
        this.dir,
        () => this.#day,
        () => this.#stopping,
        this.#log,
      ),
    )
    this.#checkpointTimer = setInterval(() => {
      if (this.#seq > this.#checkpointed) void this.checkpoint()
    }, this.#config.checkpointSeconds * 1000)
    this.#checkpointTimer.unref()
    this.#log.info({ dir: this.dir, seq: this.#seq }, 'audit trail ready')
  }

  async stop(): Promise<void> {
    this.#stopping = true
    clearInterval(this.#checkpointTimer)
    // Rotation work (compression, retention) may itself record events: drain until quiet. With
    // the disk full, try again twice a second for the shutdown grace, then say what is lost.
    const deadline = Date.now() + this.#graceMs
    do {
      await this.flush()
      await Promise.all(this.#background)
      if (this.#queue.length && this.#failing) {
        if (Date.now() >= deadline) {
          this.#log.fatal(
            { unwritten: this.#queue.length, lastSeq: this.#seq },
            'stopping with audit records that could not be written (the disk is full): they are lost',
          )
          this.#queue = []
          break
        }
        await new Promise((r) => setTimeout(r, 500))
      }
    } while (this.#queue.length)
    if (this.#seq > this.#checkpointed) await this.checkpoint()
    await this.#checkpointing
    await this.#fh?.close()
    this.#fh = undefined
    this.#started = false
  }

  /**
   * Resolves once the records emitted so far are on disk (written now, with
   * whatever else is queued: one fsync for every caller waiting). While the
   * disk refuses writes it resolves after the attempt; the records stay queued
   * and the box stops taking mail once the backlog grows (EAUDIT_BACKLOG).
   */
  async durable(): Promise<void> {
    if (this.#started) await this.flush()
  }

  /** Writes every queued event now (tests, shutdown); resolves when they are on disk. */
  async flush(): Promise<void> {
    clearTimeout(this.#flushTimer)
    this.#flushTimer = undefined
    while (this.#flushing) await this.#flushing
    while (this.#queue.length) {
      this.#flushing = this.#drain()
      try {
        if (!(await this.#flushing)) return // a retry is scheduled
      } finally {
        this.#flushing = undefined
      }
    }
  }

  /**
   * Signs (seq, head, time) in the HSM and appends it to the day's checkpoint
   * file: for the record given, or the last one on disk when the turn comes.
   */
  checkpoint(at?: { seq: number; head: string }): Promise<void> {
    const run = this.#checkpointing.then(async () => {
      const seq = at?.seq ?? this.#seq
      const head = at?.head ?? this.#head
      if (seq === 0 || seq <= this.#checkpointed) return
      const time = new Date(this.#clock.now()).toISOString()
      try {
        if (!this.#publicKeyWritten) await this.#writePublicKey()
        const sig = await this.#hsm.keys.sign(CHECKPOINT_KEY_LABEL, 'ecdsa-p256-sha256', checkpointPayload({ seq, head, time }))
        const c: Checkpoint = { seq, head, time, sig: sig.toString('base64') }
        const fh = await open(join(this.dir, checkpointName(time.slice(0, 10))), 'a', 0o600)
        try {
          await appendWhole(fh, Buffer.from(`${JSON.stringify(c)}\n`), (await fh.stat()).size, true)
        } finally {
          await fh.close()
        }
        this.#checkpointed = seq
      } catch (err) {
        this.#log.error({ err: (err as Error).message, seq }, 'audit checkpoint could not be signed; records are kept and the next checkpoint will cover them')
      }
    })
    this.#checkpointing = run
    return run
  }

  /**
   * Writes the queued events as records. Each group is written and fsync'd
   * before the chain head moves; a failed write (disk full, I/O error) is cut
   * back off the file and its events go back to the front of the queue.
   */
  async #drain(): Promise<boolean> {
    const batch = this.#queue
    this.#queue = []
    const lines: string[] = []
    let committed = 0
    let seq = this.#seq
    let head = this.#head
    let bytes = ''
    const write = async (upTo: number) => {
      if (bytes) {
        const fh = this.#fh!
        try {
          // A write the disk takes only part of is cut back to the last whole record and the
          // group tried again later: no record is lost and none is glued to a torn one.
          await appendWhole(fh, Buffer.from(bytes), (await fh.stat()).size, true)
        } catch (err) {
          this.#failing = true
          throw err
        }
        this.#failing = false
      }
      bytes = ''
      committed = upTo
      this.#seq = seq
      this.#head = head
    }
    try {
      for (let i = 0; i < batch.length; i++) {
        const p = batch[i]!
        const day = dayOf(p.time)
        if (this.#day === undefined || day > this.#day) {
          await write(i)
          await this.#rotate(day)
        }
        const fields = await p.fields
        const line = recordLine(seq + 1, head, { time: new Date(p.time).toISOString(), ...fields })
        seq++
        head = recordHash(line)
        lines.push(line)
        bytes += `${line}\n`
        if (seq - this.#checkpointAsked >= this.#config.checkpointEvery) {
          // Exactly every `checkpointEvery` records, even inside a large group: write up to here, sign this point.
          await write(i + 1)
          this.#checkpointAsked = seq
          void this.checkpoint({ seq, head })
        }
      }
      await write(batch.length)
    } catch (err) {
      this.#queue = batch.slice(committed).concat(this.#queue)
      lines.length = committed
      this.#log.error({ err: (err as Error).message, waiting: this.#queue.length }, 'audit records could not be written; retrying')
      if (!this.#stopping) this.#flushTimer ??= setTimeout(() => void this.flush(), 1000)
    }
    if (lines.length) for (const l of this.#appendListeners) l(lines, this.#seq)
    return committed === batch.length
  }

  /** Finds where the trail ends: the last complete line of the newest segment (a torn tail is cut off and reported). */
  async #recover(): Promise<number> {
    const segments = await listSegments(this.dir)
    const last = segments.at(-1)
    let torn = 0
    for (const s of segments.slice(0, -1)) if (!s.gz) this.#background.push(this.#finishDay(s.day))
    if (!last) return 0
    if (last.gz) {
      const end = await dayEnd(this.dir, last.day)
      this.#seq = end.seq
      this.#head = end.hash
      this.#lastTimeAtStart = Date.parse(`${last.day}T23:59:59.999Z`)
      return 0
    }
    const { size } = await stat(last.file)
    const tail = await lastLine(last.file, size)
    if (tail.tornBytes) {
      torn = tail.tornBytes
      await truncate(last.file, size - torn)
      this.#log.warn({ file: last.file, tornBytes: torn }, 'audit segment ended in a partial record (crash while writing); cut it off')
    }
    if (tail.line !== undefined) {
      const link = recordLink(tail.line)
      if (!link) throw boxError('EAUDIT_UNREADABLE', `audit segment ${last.file} ends in a line that is not a record`)
      this.#seq = link.seq
      this.#head = recordHash(tail.line)
      this.#lastTimeAtStart = Date.parse((JSON.parse(tail.line) as { time?: string }).time ?? '') || 0
    } else {
      const previous = segments.at(-2)
      if (previous) ({ seq: this.#seq, hash: this.#head } = await dayEnd(this.dir, previous.day))
    }
    this.#day = last.day
    this.#fh = await open(last.file, 'a', 0o600)
    return torn
  }

  async #rotate(day: string): Promise<void> {
    const previous = this.#day
    await this.#fh?.close()
    this.#fh = await open(join(this.dir, segmentName(day)), 'a', 0o600)
    fsyncDir(this.dir)
    this.#day = day
    if (previous) {
      writeFileAtomic(join(this.dir, endName(previous)), JSON.stringify({ seq: this.#seq, hash: this.#head }))
      this.#inBackground(this.#finishDay(previous).then(() => this.#housekeeping()))
    }
  }

  /** Work that runs beside appending; stop() waits for it. */
  #inBackground(work: Promise<void>): void {
    this.#background.push(work)
    void work.finally(() => (this.#background = this.#background.filter((b) => b !== work)))
  }

  async #finishDay(day: string): Promise<void> {
    await finishDay(this.dir, day).catch((err: Error) =>
      this.#log.error({ err: err.message, day }, 'could not compress an audit segment; it stays uncompressed'),
    )
  }

  /** Retention (delete days older than `retentionDays`) and the disk budget alarm. */
  async #housekeeping(): Promise<void> {
    const cutoff = dayOf(this.#clock.now() - this.#config.retentionDays * 86_400_000)
    const { removed, bytes } = await removeExpired(this.dir, cutoff, this.#day)
    if (removed.length) {
      this.#log.info({ days: removed }, 'audit segments past retention removed')
      this.emit({ type: 'audit.retention', removed })
    }
    if (bytes > this.#config.diskBudgetBytes) {
      this.#log.error({ bytes, budget: this.#config.diskBudgetBytes }, 'audit trail is over its disk budget; add disk or export and archive old segments')
      this.emit({ type: 'audit.disk_budget', bytes, budget: this.#config.diskBudgetBytes })
    }
  }

  async #writePublicKey(): Promise<void> {
    const key = await this.#hsm.keys.publicKey(CHECKPOINT_KEY_LABEL)
    writeFileAtomic(join(this.dir, PUBLIC_KEY_FILE), key.export({ type: 'spki', format: 'pem' }), 0o644)
    this.#publicKeyWritten = true
  }
}
