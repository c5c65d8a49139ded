import { Worker } from 'node:worker_threads'
import type { Logger } from '../log.ts'
import { MimeError, type MimeErrorCode } from '../mime/header.ts'
import { createError } from '../box-errors.ts'
import type { InspectOutcome, InspectRequest, Profile } from './inspect.ts'
import type { Job, JobResult } from './worker.ts'

/** A mail whose inspection ran past its budget: the worker was stopped, the mail is tempfailed. */
export class InspectionTimeout extends createError('EINSPECTION_TIMEOUT', 'InspectionTimeout') {}
/** The ad hoc tempfails of the pool, one coded class: the mail is refused with a 451 and the firm's system sends it again. */
export class InspectionUnavailable extends createError('EINSPECTION_UNAVAILABLE', 'InspectionUnavailable') {}

/** What an inspection gives back: its outcome, and the mail's bytes (moved back from the worker). */
export interface Inspected {
  outcome: InspectOutcome
  message: Buffer
}

interface Pending {
  req: InspectRequest
  resolve: (o: Inspected) => void
  reject: (e: Error) => void
}

interface Slot {
  worker: Worker
  /** The worker has loaded and said so; until then it gets no job (its start-up is not a job's time). */
  ready: boolean
  job: (Pending & { id: number; timer: NodeJS.Timeout; started: number; offset: number; length: number }) | undefined
}

/**
 * Inspection off the event loop (S6 robustness): every mail is read and judged
 * in one of a few worker threads, so no message — however large or crafted —
 * can hold up other clients' TLS handshakes and replies. Each job has a time
 * budget; past it the worker is terminated and replaced and the mail gets a
 * temporary failure, never an unchecked acceptance. A worker that dies
 * (a crash, its heap limit) fails only the job it had.
 */
export class InspectionPool {
  readonly #opts: { workers: number; budgetMs: number; profiles: readonly Profile[]; log: Logger; heapMb?: number }
  readonly #slots: Slot[] = []
  readonly #queue: Pending[] = []
  #nextId = 1
  #stopped = false

  constructor(opts: { workers: number; budgetMs: number; profiles: readonly Profile[]; log: Logger; heapMb?: number }) {
    this.#opts = opts
  }

  start(): void {
    for (let i = 0; i < this.#opts.workers; i++) this.#slots.push({ worker: this.#spawn(), ready: false, job: undefined })
  }

  async stop(): Promise<void> {
    this.#stopped = true
    for (const p of this.#queue.splice(0)) p.reject(new InspectionUnavailable('the box is stopping'))
    await Promise.all(this.#slots.map((s) => s.worker.terminate()))
    this.#slots.length = 0
  }

  /**
   * Reads and judges one mail; rejects with MimeError (structure), InspectionTimeout, or Error.
   * A large mail's memory is moved to the worker and back, not copied: while the job runs the
   * caller's buffer is empty, and the mail's bytes are the `message` returned.
   */
  run(req: InspectRequest): Promise<Inspected> {
    if (this.#stopped) return Promise.reject(new InspectionUnavailable('the box is stopping'))
    return new Promise((resolve, reject) => {
      this.#queue.push({ req, resolve, reject })
      this.#dispatch()
    })
  }

  /** Jobs waiting for a worker. */
  get waiting(): number {
    return this.#queue.length
  }

  #spawn(): Worker {
    const worker = new Worker(new URL('./worker.ts', import.meta.url), {
      workerData: { profiles: this.#opts.profiles },
      resourceLimits: { maxOldGenerationSizeMb: this.#opts.heapMb ?? 512 },
    })
    worker.unref()
    worker.on('message', (r: JobResult | { ready: true }) => ('ready' in r ? this.#ready(worker) : this.#done(worker, r)))
    worker.on('error', (err: Error) => this.#lost(worker, err))
    worker.on('exit', (code) => this.#lost(worker, new InspectionUnavailable(`inspection worker exited (${code})`)))
    return worker
  }

  #dispatch(): void {
    for (const slot of this.#slots) {
      if (!slot.ready || slot.job || this.#queue.length === 0) continue
      const p = this.#queue.shift()!
      const id = this.#nextId++
      // A mail in memory of its own (larger than Buffer's shared pool) is moved to the worker and
      // back; a small one, which may share its memory with other buffers, is copied.
      const m = p.req.message
      const own = m.buffer instanceof ArrayBuffer && m.buffer.byteLength > Buffer.poolSize
      const buffer = own ? m.buffer : new Uint8Array(m).buffer
      const job: Job = { id, buffer, offset: own ? m.byteOffset : 0, length: m.byteLength, account: p.req.account, mailFrom: p.req.mailFrom }
      const timer = setTimeout(() => this.#timeout(slot), this.#opts.budgetMs)
      slot.job = { ...p, id, timer, started: Date.now(), offset: job.offset, length: job.length }
      slot.worker.postMessage(job, [buffer])
    }
  }

  #ready(worker: Worker): void {
    const slot = this.#slots.find((s) => s.worker === worker)
    if (!slot) return
    slot.ready = true
    this.#dispatch()
  }

  #done(worker: Worker, r: JobResult): void {
    const slot = this.#slots.find((s) => s.worker === worker)
    const job = slot?.job
    if (!slot || !job || job.id !== r.id) return
    clearTimeout(job.timer)
    slot.job = undefined
    if (r.ok) job.resolve({ outcome: r.outcome, message: Buffer.from(r.buffer, job.offset, job.length) })
    else if (r.code === 'ETEMPORARY') job.reject(new InspectionUnavailable(r.reason))
    else job.reject(new MimeError(r.code as MimeErrorCode, r.reason))
    this.#dispatch()
  }

  #timeout(slot: Slot): void {
    const job = slot.job
    if (!job) return
    slot.job = undefined
    const old = slot.worker
    old.removeAllListeners()
    old.on('error', () => {})
    void old.terminate()
    slot.worker = this.#spawn()
    slot.ready = false
    this.#opts.log.warn({ ms: Date.now() - job.started, bytes: job.req.message.length }, 'inspection ran past its budget; worker replaced, mail tempfailed')
    job.reject(new InspectionTimeout(`inspection took longer than ${this.#opts.budgetMs} ms`))
    this.#dispatch()
  }

  #lost(worker: Worker, err: Error): void {
    const slot = this.#slots.find((s) => s.worker === worker)
    if (!slot || this.#stopped) return
    const job = slot.job
    slot.job = undefined
    if (job) clearTimeout(job.timer)
    worker.removeAllListeners()
    worker.on('error', () => {})
    slot.worker = this.#spawn()
    slot.ready = false
    this.#opts.log.error({ err: err.message }, 'inspection worker failed; replaced')
    job?.reject(err)
    this.#dispatch()
  }
}
