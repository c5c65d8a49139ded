import { createReadStream, createWriteStream, mkdirSync } from 'node:fs'
import { open, readdir, rename, stat, truncate, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { createGzip } from 'node:zlib'
import type { Clock } from '../../hal/clock.ts'
import type { Hsm } from '../../hal/hsm/index.ts'
import { fsyncDir, writeFileAtomic } from '../../hal/storage/files.ts'
import type { Component } from '../component.ts'
import type { Config } from '../config/load.ts'
import { withMaskedText, type BoxEvent, type EventSink } from '../events.ts'
import { CHECKPOINT_KEY_LABEL, RECIPIENT_HMAC_LABEL } from '../keys/labels.ts'
import { maskAddress, type Logger } from '../log.ts'
import { SECRET_FIELDS } from '../secrets.ts'
import {
  GENESIS,
  checkpointName,
  checkpointPayload,
  dayOf,
  endName,
  filterName,
  recordHash,
  recordLine,
  recordLink,
  segmentName,
  type Checkpoint,
} from './record.ts'
import { buildDayFilter } from './search.ts'
import { listSegments, readEnd, readLines } from './segments.ts'

export const PUBLIC_KEY_FILE = 'checkpoint-key.pem'
const HMAC_CACHE_LIMIT = 100_000
const SECRETS = new Set<string>(SECRET_FIELDS)

/** A recipient as the trail keeps it (S6): keyed hash for proof, masked form for people. */
export interface RecipientRef {
  /** HMAC-SHA256 (hex) of the lower-cased address under the HSM key `audit/recipient-hmac`; null if the HSM was unavailable. */
  h: string | null
  m: string
}

/** HMAC of a recipient address as the trail stores it; the firm recomputes it to prove a delivery. */
export async function recipientHash(hsm: Hsm, address: string): Promise<string> {
  return (await hsm.keys.hmac(RECIPIENT_HMAC_LABEL, Buffer.from(address.trim().toLowerCase()))).toString('hex')
}

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
  readonly #hmacCache = new Map<string, string>()
  readonly #appendListeners: ((lines: readonly string[], lastSeq: number) => void)[] = []

  constructor(deps: { config: Config; log: Logger; hsm: Hsm; clock: Clock }) {
    this.dir = join(deps.config.dataDir, 'audit')
    this.#config = deps.config.audit
    this.#graceMs = deps.config.shutdown.graceMs
    this.#log = deps.log.child({ component: 'audit' })
    this.#hsm = deps.hsm
    this.#clock = deps.clock
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
    this.#queue.push({ time: this.#clock.now(), fields: this.#prepare(event) })
    if (this.#started && !this.#flushTimer) this.#flushTimer = setTimeout(() => void this.flush(), this.#config.flushMs)
  }

  async start(): Promise<void> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    const torn = await this.#recover()
    this.#checkpointAsked = this.#seq
    await this.#writePublicKey().catch((err: Error) => this.#log.error({ err: err.message }, 'could not export the checkpoint public key yet (HSM unavailable?); will retry'))
    this.#started = true
    this.emit({ type: 'audit.started', lastSeq: this.#seq, tornBytes: torn })
    await this.#housekeeping()
    this.#inBackground(this.#filterMissingDays())
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
          this.#log.fatal({ unwritten: this.#queue.length, lastSeq: this.#seq }, 'stopping with audit records that could not be written (the disk is full): they are lost')
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
          await fh.write(`${JSON.stringify(c)}\n`)
          await fh.datasync()
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
        const at = (await fh.stat()).size
        const data = Buffer.from(bytes)
        try {
          // A full disk can take part of a write without an error: what it took is cut back
          // (to the end of the last whole record) and the group tried again later, so no
          // record is lost and none is glued to the rest of a torn one.
          const { bytesWritten } = await fh.write(data, 0, data.length, null)
          if (bytesWritten !== data.length) throw Object.assign(new Error(`audit write cut short (${bytesWritten} of ${data.length} bytes)`), { code: 'ENOSPC' })
          await fh.datasync()
        } catch (err) {
          this.#failing = true
          await fh.truncate(at).catch(() => {})
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

  /** The event as a record: recipients replaced by HMAC + mask, secrets in config snapshots removed. */
  async #prepare(original: BoxEvent): Promise<Record<string, unknown>> {
    const event = withMaskedText(original)
    if ('recipients' in event) {
      const { recipients, ...rest } = event
      return { ...rest, recipients: await Promise.all(recipients.map((r) => this.#recipient(r))) }
    }
    if (event.type === 'config.changed') return { ...event, before: withoutSecrets(event.before), after: withoutSecrets(event.after) }
    return { ...event }
  }

  async #recipient(address: string): Promise<RecipientRef> {
    const key = address.trim().toLowerCase()
    let h = this.#hmacCache.get(key)
    if (h === undefined) {
      try {
        h = await recipientHash(this.#hsm, key)
        if (this.#hmacCache.size >= HMAC_CACHE_LIMIT) this.#hmacCache.clear()
        this.#hmacCache.set(key, h)
      } catch (err) {
        // Never the clear address instead: the record keeps the masked form only.
        this.#log.error({ err: (err as Error).message }, 'recipient HMAC unavailable (HSM); recording the masked address only')
        return { h: null, m: maskAddress(key) }
      }
    }
    return { h, m: maskAddress(key) }
  }

  /** Finds where the trail ends: the last complete line of the newest segment (a torn tail is cut off and reported). */
  async #recover(): Promise<number> {
    const segments = await listSegments(this.dir)
    const last = segments.at(-1)
    let torn = 0
    for (const s of segments.slice(0, -1)) if (!s.gz) this.#background.push(this.#finishDay(s.day))
    if (!last) return 0
    if (last.gz) {
      const end = await this.#readEnd(last.day)
      this.#seq = end.seq
      this.#head = end.hash
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
      if (!link) throw new Error(`audit segment ${last.file} ends in a line that is not a record`)
      this.#seq = link.seq
      this.#head = recordHash(tail.line)
    } else {
      const previous = segments.at(-2)
      if (previous) ({ seq: this.#seq, hash: this.#head } = await this.#readEnd(previous.day))
    }
    this.#day = last.day
    this.#fh = await open(last.file, 'a', 0o600)
    return torn
  }

  async #readEnd(day: string): Promise<{ seq: number; hash: string }> {
    const end = await readEnd(this.dir, day)
    if (end) return end
    // No end file (it is written before compression, so only if removed): read the day to its end.
    const seg = (await listSegments(this.dir)).find((s) => s.day === day)!
    let line: string | undefined
    for await (const l of readLines(seg)) if (l.complete) line = l.text
    const link = line === undefined ? undefined : recordLink(line)
    if (!link) throw new Error(`audit segment for ${day} has no record to end on and no end file`)
    return { seq: link.seq, hash: recordHash(line!) }
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

  /** Search filters for finished days that have none (a trail from before filters, or a crash mid-build). */
  async #filterMissingDays(): Promise<void> {
    const names = new Set(await readdir(this.dir))
    for (const seg of await listSegments(this.dir)) {
      if (this.#stopping) return
      if (seg.day === this.#day || names.has(filterName(seg.day))) continue
      await buildDayFilter(this.dir, seg, () => this.#stopping).catch((err: Error) => this.#log.warn({ day: seg.day, err: err.message }, 'could not build the search filter of an audit day'))
    }
  }

  /** Compresses a finished day's segment: gzip to a temporary file, fsync, rename, then remove the plain file. */
  async #finishDay(day: string): Promise<void> {
    const plain = join(this.dir, segmentName(day))
    const gz = `${plain}.gz`
    try {
      if (!(await readEnd(this.dir, day))) writeFileAtomic(join(this.dir, endName(day)), JSON.stringify(await this.#readEnd(day)))
      await buildDayFilter(this.dir, { day, file: plain, gz: false })
      const tmp = `${gz}.tmp`
      await pipeline(createReadStream(plain), createGzip({ level: 6 }), createWriteStream(tmp, { mode: 0o600 }))
      const fh = await open(tmp, 'r+')
      await fh.sync()
      await fh.close()
      await rename(tmp, gz)
      fsyncDir(this.dir)
      await unlink(plain)
    } catch (err) {
      this.#log.error({ err: (err as Error).message, day }, 'could not compress an audit segment; it stays uncompressed')
    }
  }

  /** Retention (delete days older than `retentionDays`) and the disk budget alarm. */
  async #housekeeping(): Promise<void> {
    const cutoff = dayOf(this.#clock.now() - this.#config.retentionDays * 86_400_000)
    const removed = new Set<string>()
    let bytes = 0
    for (const name of await readdir(this.dir)) {
      const day = /(\d{4}-\d{2}-\d{2})/.exec(name)?.[1]
      if (day && day < cutoff && day !== this.#day) {
        await unlink(join(this.dir, name)).catch(() => {})
        removed.add(day)
      } else {
        bytes += (await stat(join(this.dir, name)).catch(() => ({ size: 0 }))).size
      }
    }
    if (removed.size) {
      this.#log.info({ days: [...removed].sort() }, 'audit segments past retention removed')
      this.emit({ type: 'audit.retention', removed: [...removed].sort() })
    }
    if (bytes > this.#config.diskBudgetBytes) {
      this.#log.error({ bytes, budget: this.#config.diskBudgetBytes }, 'audit trail is over its disk budget; add disk or export and archive old segments')
      this.emit({ type: 'audit.disk_budget', bytes, budget: this.#config.diskBudgetBytes })
    }
  }

  async #writePublicKey(): Promise<void> {
    const key = await this.#hsm.keys.publicKey(CHECKPOINT_KEY_LABEL)
    writeFileAtomic(join(this.dir, PUBLIC_KEY_FILE), key.export({ type: 'spki', format: 'pem' }) as string, 0o644)
    this.#publicKeyWritten = true
  }
}

/** The last complete line of a file and the length of any partial line after it. */
async function lastLine(file: string, size: number): Promise<{ line: string | undefined; tornBytes: number }> {
  const fh = await open(file, 'r')
  try {
    let buf = Buffer.alloc(0)
    let pos = size
    let tornBytes: number | undefined
    while (pos > 0) {
      const n = Math.min(65536, pos)
      pos -= n
      const chunk = Buffer.alloc(n)
      await fh.read(chunk, 0, n, pos)
      buf = Buffer.concat([chunk, buf])
      if (tornBytes === undefined) {
        const nl = buf.lastIndexOf(0x0a)
        if (nl < 0) continue
        tornBytes = buf.length - nl - 1
      }
      const end = buf.length - tornBytes - 1
      const start = end > 0 ? buf.lastIndexOf(0x0a, end - 1) : -1
      if (start >= 0) return { line: buf.subarray(start + 1, end).toString('utf8'), tornBytes }
    }
    if (tornBytes === undefined) return { line: undefined, tornBytes: size }
    const end = buf.length - tornBytes - 1
    return { line: end > 0 ? buf.subarray(0, end).toString('utf8') : undefined, tornBytes }
  } finally {
    await fh.close()
  }
}

function withoutSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutSecrets)
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, SECRETS.has(k) ? '[redacted]' : withoutSecrets(v)]))
  }
  return value
}
