import { Worker } from 'node:worker_threads'

/** In a line handed to `AppendThread.append`, replaced by the write's time (ms, base 36) on the thread. */
export const STAMP = '\u0001'

type Reply = { id: number; at: number; ms: number } | { id: number; error: { message: string; code?: string } }

/**
 * A file appended to by a thread of its own (#33): each write is made durable
 * (O_DSYNC) on that thread, synchronously, so it never waits in the libuv
 * pool behind file reads, record fsyncs or anything else the box has in
 * flight. The time in each line (`STAMP`) is read on that thread just before
 * the write, and the write's duration comes back with it: what the line's
 * stamp leaves out. A write the disk takes only in part is cut back, so the
 * file always ends with whole writes (as `appendWhole`).
 */
export class AppendThread {
  readonly #worker: Worker
  readonly #pending = new Map<number, { resolve: (r: { at: number; ms: number }) => void; reject: (e: Error) => void }>()
  #next = 0
  #closed: Promise<void> | undefined

  /** Opens (creating it, mode 0600) `path` for appending on a new thread. */
  constructor(path: string) {
    this.#worker = new Worker(new URL('./append-worker.ts', import.meta.url), { workerData: { path } })
    this.#worker.on('message', (r: Reply) => {
      const job = this.#pending.get(r.id)
      if (!job) return
      this.#pending.delete(r.id)
      if (this.#pending.size === 0) this.#worker.unref()
      if ('error' in r) job.reject(Object.assign(new Error(r.error.message), r.error.code ? { code: r.error.code } : {}))
      else job.resolve({ at: r.at, ms: r.ms })
    })
    this.#worker.on('error', (err: Error) => this.#failAll(err))
    this.#worker.on('exit', () => this.#failAll(new Error('the append thread stopped')))
    this.#worker.unref()
  }

  /** Durable when it resolves: `text` with every `STAMP` replaced, appended whole; with the stamp and the write's ms. */
  append(text: string): Promise<{ at: number; ms: number }> {
    if (this.#closed) return Promise.reject(new Error('the file is closed'))
    const id = ++this.#next
    if (this.#pending.size === 0) this.#worker.ref()
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject })
      this.#worker.postMessage({ id, text })
    })
  }

  /** Closes the file and ends the thread once the writes already asked for are done. */
  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      this.#worker.ref()
      this.#worker.once('exit', () => resolve())
      this.#worker.postMessage({ id: 0, close: true })
    })
    return this.#closed
  }

  #failAll(err: Error): void {
    for (const job of this.#pending.values()) job.reject(err)
    this.#pending.clear()
  }
}
