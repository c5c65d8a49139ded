import { Worker } from 'node:worker_threads'
import type { Handle } from './pkcs11.ts'

/** A token operation run whole on a thread of its own: its `Init` and the operation (init-worker.ts). */
export interface OffThreadJob {
  id: number
  op: 'sign' | 'encrypt' | 'decrypt'
  session: Uint8Array
  key: Uint8Array
  mechanism: { mechanism: number; parameter?: Record<string, unknown> }
  input: Uint8Array
  /** Room for the output (a signature, ciphertext and tag, plaintext). */
  outLength: number
}

/**
 * Test only (#38): a module whose `threadQuirk(p, data)` wraps the token module on each token
 * thread, as TokenOptions.quirks does on the main thread — signing and the spool's encryption run
 * here, so a vendor's behaviour on C_Sign can only be reproduced here. `data` crosses by structured
 * clone (a SharedArrayBuffer stays shared, so a test can switch a quirk on and off).
 */
export interface ThreadQuirks {
  module: string
  data?: unknown
}

export type OffThreadReply = { id: number; ok: Uint8Array } | { id: number; error: { name: string; message: string } }

/** What a pkcs11js failure looked like in the worker, rebuilt so errors.ts reads it the same (its CKR name, its kind). */
class RemoteError extends Error {
  constructor(e: { name: string; message: string }) {
    super(e.message)
    this.name = e.name
  }
}

/**
 * The threads that run token operations whole, off the main thread (#33):
 * one per session, so every session can be busy at once as before, each job
 * on the thread that is least busy. Started with the first job.
 *
 * One pool per module for the whole process, never stopped (its threads are
 * unref'd): each thread holds the library loaded, and a thread that ended
 * would run its finaliser and unload the module under the token that closed
 * and the next one that opens it (a crash, SIGSEGV, seen when a process
 * opened and closed tokens one after another). A token's close leaves the
 * threads idle; its sessions are gone, so no job of it can still be sent.
 */
export class OffThread {
  static readonly #pools = new Map<string, OffThread>()
  static readonly #quirked = new WeakMap<ThreadQuirks, OffThread>()

  /** The process's pool for a module, grown to `threads` if a token with more sessions asks; a quirked token's pool is its own. */
  static for(module: string, env: Readonly<Record<string, string>>, threads: number, quirks?: ThreadQuirks): OffThread {
    let pool = quirks ? OffThread.#quirked.get(quirks) : OffThread.#pools.get(module)
    if (!pool) {
      pool = new OffThread(module, env, threads, quirks)
      if (quirks) OffThread.#quirked.set(quirks, pool)
      else OffThread.#pools.set(module, pool)
    }
    pool.#size = Math.max(pool.#size, threads)
    return pool
  }

  readonly #module: string
  readonly #env: NodeJS.ProcessEnv
  readonly #quirks: ThreadQuirks | undefined
  #size: number
  #threads: { worker: Worker; busy: number }[] = []
  readonly #pending = new Map<number, { resolve: (b: Buffer) => void; reject: (e: Error) => void; thread: { worker: Worker; busy: number } }>()
  #next = 0

  private constructor(module: string, env: Readonly<Record<string, string>>, threads: number, quirks: ThreadQuirks | undefined) {
    this.#module = module
    this.#quirks = quirks
    this.#env = { ...process.env, ...env }
    this.#size = threads
  }

  run(op: OffThreadJob['op'], session: Handle, key: Handle, mechanism: OffThreadJob['mechanism'], input: Buffer, outLength: number): Promise<Buffer> {
    if (this.#threads.length < this.#size) this.#start()
    const thread = this.#threads.reduce((a, b) => (b.busy < a.busy ? b : a))
    const id = ++this.#next
    // A thread with a job keeps the process alive until it answers; an idle one does not.
    if (thread.busy++ === 0) thread.worker.ref()
    return new Promise<Buffer>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, thread })
      const job: OffThreadJob = { id, op, session, key, mechanism, input, outLength }
      thread.worker.postMessage(job)
    })
  }

  /** Starts threads up to the pool's size (at the first job, and in place of one that died). */
  #start(): void {
    while (this.#threads.length < this.#size) {
      const worker = new Worker(new URL('./init-worker.ts', import.meta.url), { workerData: { module: this.#module, quirks: this.#quirks }, env: this.#env })
      const thread = { worker, busy: 0 }
      worker.on('message', (r: OffThreadReply) => {
        const job = this.#pending.get(r.id)
        if (!job) return
        this.#pending.delete(r.id)
        if (--job.thread.busy === 0) thread.worker.unref()
        if ('ok' in r) job.resolve(Buffer.from(r.ok.buffer, r.ok.byteOffset, r.ok.byteLength))
        else job.reject(new RemoteError(r.error))
      })
      worker.on('error', (err: Error) => this.#failAll(thread, err))
      worker.on('exit', () => this.#failAll(thread, new Error('the token thread stopped')))
      // A token thread never keeps the box from exiting (unref'd after its listeners, which would ref it again).
      worker.unref()
      this.#threads.push(thread)
    }
  }

  /** A thread that died fails its jobs (an unexplained failure, EHSM_FAILED) and is replaced at the next job. */
  #failAll(thread: { worker: Worker; busy: number }, err: Error): void {
    for (const [id, job] of this.#pending)
      if (job.thread === thread) {
        this.#pending.delete(id)
        job.reject(err)
      }
    this.#threads = this.#threads.filter((t) => t !== thread)
  }
}
