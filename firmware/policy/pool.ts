import { Worker } from 'node:worker_threads'
import type { Logger } from '../log.ts'
import { MimeError, type MimeErrorCode } from '../mime/tree.ts'
import type { InspectOutcome, InspectRequest, Profile } from './inspect.ts'
import type { Job, JobResult } from './worker.ts'

/** A mail whose inspection ran past its budget: the worker was stopped, the mail is tempfailed. */
export class InspectionTimeout extends Error {
  override name = 'InspectionTimeout'
}

interface Pending {
  req: InspectRequest
  resolve: (o: InspectOutcome) => void
  reject: (e: Error) => void
}

interface Slot {
  worker: Worker
  job: (Pending & { id: number; timer: NodeJS.Timeout; started: number }) | undefined
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
    for (let i = 0; i < this.#opts.workers; i++) this.#slots.push({ worker: this.#spawn(), job: undefined })
  }

  async stop(): Promise<void> {
    this.#stopped = true
    for (const p of this.#queue.splice(0)) p.reject(new Error('the box is stopping'))
    await Promise.all(this.#slots.map((s) => s.worker.terminate()))
    this.#slots.length = 0
  }

  /** Reads and judges one mail; rejects with MimeError (structure), InspectionTimeout, or Error. */
  run(req: InspectRequest): Promise<InspectOutcome> {
    if (this.#stopped) return Promise.reject(new Error('the box is stopping'))
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
    worker.on('message', (r: JobResult) => this.#done(worker, r))
    worker.on('error', (err) => this.#lost(worker, err))
    worker.on('exit', (code) => this.#lost(worker, new Error(`inspection worker exited (${code})`)))
    return worker
  }

  #dispatch(): void {
    for (const slot of this.#slots) {
      if (slot.job || this.#queue.length === 0) continue
      const p = this.#queue.shift()!
      const id = this.#nextId++
      // Submission reads mail into shared memory: the worker reads those very bytes. Anything
      // else is copied once and the copy moved across.
      const m = p.req.message
      const shared = m.buffer instanceof SharedArrayBuffer
      const bytes = shared ? new Uint8Array(m.buffer, m.byteOffset, m.byteLength) : new Uint8Array(m)
      const job: Job = { id, message: bytes, account: p.req.account, mailFrom: p.req.mailFrom }
      const timer = setTimeout(() => this.#timeout(slot), this.#opts.budgetMs)
      slot.job = { ...p, id, timer, started: Date.now() }
      slot.worker.postMessage(job, shared ? [] : [bytes.buffer as ArrayBuffer])
    }
  }

  #done(worker: Worker, r: JobResult): void {
    const slot = this.#slots.find((s) => s.worker === worker)
    const job = slot?.job
    if (!slot || !job || job.id !== r.id) return
    clearTimeout(job.timer)
    slot.job = undefined
    if (r.ok) job.resolve(r.outcome)
    else if (r.code === 'ETEMPORARY') job.reject(new Error(r.reason))
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
    this.#opts.log.error({ err: err.message }, 'inspection worker failed; replaced')
    job?.reject(err)
    this.#dispatch()
  }
}
