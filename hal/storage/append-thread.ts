import { Worker } from 'node:worker_threads'

/** In a line handed to `AppendThread.append`, replaced by the write's time (ms, base 36) on the thread. */
export const STAMP = '\u0001'

type Failure = { message: string; code?: string }
type Ready = { fd: number; size: number }
type Written = { id: number; at: number; began: number; end: number } | { id: number; error: Failure }
type Synced = { durable: number; at?: number; error?: Failure }

interface Job {
  resolve: (r: { at: number; ms: number }) => void
  reject: (e: Error) => void
  /** Set once the writer has it in the file: the line's stamp, when its write began, and the file's end after it. */
  at?: number
  began?: number
  end?: number
}

const failure = (f: Failure) => Object.assign(new Error(f.message), f.code ? { code: f.code } : {})

/**
 * A file appended to by two threads of its own (#33). The writer
 * (append-worker.ts) puts each line in the file the moment it is asked: once
 * its write returns the line is in the page cache, where a kill -9 of the
 * daemon cannot take it back, and no write ever waits for a disk flush. The
 * sync thread (sync-worker.ts) runs one fdatasync at a time for everything
 * written so far; an append resolves when a flush that covers it is done, so
 * it survives a power cut too. Neither waits in the libuv pool behind file
 * reads, record fsyncs or scrypt. The time in each line (`STAMP`) is read on
 * the writer just before the write; the reply gives it and the time from it
 * to durable. A write the disk takes only in part is cut back, so the file
 * always ends with whole writes (as `appendWhole`).
 */
export class AppendThread {
  /** The file's written end, a wake-up count and the stop flag (sync-worker.ts). */
  readonly #shared = new SharedArrayBuffer(24)
  readonly #writer: Worker
  #syncer: Worker | undefined
  readonly #pending = new Map<number, Job>()
  /** The file's end up to which everything is durable, and when that was known. */
  #durable = -1
  #durableAt = 0
  #next = 0
  /** How many fdatasyncs have made lines durable (each covers every line written before it began). */
  flushes = 0
  #closed: Promise<void> | undefined
  #drained: (() => void)[] = []

  /** With `flushLog`: the file the sync thread notes each flush in (sync-worker.ts). */
  readonly #flushLog: string | undefined

  /**
   * Opens (creating it, mode 0600) `path` for appending on new threads. With `flushLog`, each
   * flush is noted there (`start <end of file>`, then `<end of file> <ms>` per flush; the file
   * started afresh): the reliability suite reads it after each kill instead of asking the box
   * just before, which kept it busy at the moment of the kill.
   */
  constructor(path: string, options: { flushLog?: string } = {}) {
    this.#flushLog = options.flushLog
    this.#writer = new Worker(new URL('./append-worker.ts', import.meta.url), { workerData: { path, shared: this.#shared } })
    this.#writer.on('message', (r: Ready | Written) => ('fd' in r ? this.#startSync(r) : this.#written(r)))
    this.#writer.on('error', (err: Error) => this.#failAll(err))
    this.#writer.on('exit', () => this.#failAll(new Error('the append thread stopped')))
    this.#writer.unref()
  }

  /** Durable when it resolves: `text` with every `STAMP` replaced, appended whole; with the stamp and the ms from it to durable. */
  append(text: string): Promise<{ at: number; ms: number }> {
    if (this.#closed) return Promise.reject(new Error('the file is closed'))
    const id = ++this.#next
    if (this.#pending.size === 0) this.#writer.ref()
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject })
      this.#writer.postMessage({ id, text })
    })
  }

  /** Closes the file and ends both threads once the writes already asked for are durable. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#writer.ref()
      if (this.#pending.size) await new Promise<void>((resolve) => this.#drained.push(resolve))
      const state = new BigInt64Array(this.#shared)
      if (this.#syncer) {
        const stopped = new Promise((resolve) => this.#syncer!.once('exit', resolve))
        Atomics.store(state, 2, 1n)
        Atomics.add(state, 1, 1n)
        Atomics.notify(state, 1)
        await stopped
      }
      const exited = new Promise((resolve) => this.#writer.once('exit', resolve))
      this.#writer.postMessage({ id: 0, close: true })
      await exited
    })()
    return this.#closed
  }

  #startSync(r: Ready): void {
    this.#durable = r.size
    const syncer = new Worker(new URL('./sync-worker.ts', import.meta.url), {
      workerData: { fd: r.fd, shared: this.#shared, from: r.size, flushLog: this.#flushLog },
    })
    syncer.on('message', (m: Synced) => this.#synced(m))
    syncer.on('error', (err: Error) => this.#failAll(err))
    syncer.on('exit', () => this.#pending.size && this.#failAll(new Error('the sync thread stopped')))
    // It waits on the shared end of file for good; the writer keeps the process alive while appends are pending.
    syncer.unref()
    this.#syncer = syncer
  }

  #written(r: Written): void {
    const job = this.#pending.get(r.id)
    if (!job) return
    if ('error' in r) return this.#settle(r.id, job, failure(r.error))
    Object.assign(job, { at: r.at, began: r.began, end: r.end })
    if (r.end <= this.#durable) this.#settle(r.id, job)
  }

  #synced(m: Synced): void {
    if (m.error) {
      // What that flush covered is not known to be on the disk: every append not yet durable fails.
      for (const [id, job] of this.#pending) this.#settle(id, job, failure(m.error))
      return
    }
    this.flushes++
    this.#durable = Math.max(this.#durable, m.durable)
    this.#durableAt = m.at!
    for (const [id, job] of this.#pending) if (job.end !== undefined && job.end <= this.#durable) this.#settle(id, job)
  }

  #settle(id: number, job: Job, err?: Error): void {
    this.#pending.delete(id)
    if (err) job.reject(err)
    else job.resolve({ at: job.at!, ms: Math.max(0, this.#durableAt - job.began!) })
    if (this.#pending.size) return
    if (!this.#closed) this.#writer.unref()
    for (const d of this.#drained.splice(0)) d()
  }

  #failAll(err: Error): void {
    for (const [id, job] of this.#pending) this.#settle(id, job, err)
  }
}
