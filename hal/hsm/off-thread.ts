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
 * on the thread that is least busy. Started with the first job; stopped with
 * the token.
 */
export class OffThread {
  readonly #module: string
  readonly #env: NodeJS.ProcessEnv
  readonly #size: number
  #threads: { worker: Worker; busy: number }[] = []
  readonly #pending = new Map<number, { resolve: (b: Buffer) => void; reject: (e: Error) => void; thread: { busy: number } }>()
  #next = 0

  constructor(module: string, env: Readonly<Record<string, string>>, threads: number) {
    this.#module = module
    this.#env = { ...process.env, ...env }
    this.#size = threads
  }

  run(op: OffThreadJob['op'], session: Handle, key: Handle, mechanism: OffThreadJob['mechanism'], input: Buffer, outLength: number): Promise<Buffer> {
    if (this.#threads.length < this.#size) this.#start()
    const thread = this.#threads.reduce((a, b) => (b.busy < a.busy ? b : a))
    const id = ++this.#next
    thread.busy++
    return new Promise<Buffer>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, thread })
      const job: OffThreadJob = { id, op, session, key, mechanism, input, outLength }
      thread.worker.postMessage(job)
    })
  }

  /** Stops the threads; jobs still running fail. */
  async stop(): Promise<void> {
    const threads = this.#threads
    this.#threads = []
    await Promise.all(threads.map((t) => t.worker.terminate()))
  }

  /** Starts threads up to the pool's size (at the first job, and in place of one that died). */
  #start(): void {
    while (this.#threads.length < this.#size) {
      const worker = new Worker(new URL('./init-worker.ts', import.meta.url), { workerData: { module: this.#module }, env: this.#env })
      // A token thread never keeps the box from exiting.
      worker.unref()
      const thread = { worker, busy: 0 }
      worker.on('message', (r: OffThreadReply) => {
        const job = this.#pending.get(r.id)
        if (!job) return
        this.#pending.delete(r.id)
        job.thread.busy--
        if ('ok' in r) job.resolve(Buffer.from(r.ok.buffer, r.ok.byteOffset, r.ok.byteLength))
        else job.reject(new RemoteError(r.error))
      })
      worker.on('error', (err: Error) => this.#failAll(thread, err))
      worker.on('exit', () => this.#failAll(thread, new Error('the token thread stopped')))
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
