import { closeSync, constants, fstatSync, ftruncateSync, openSync, writeSync } from 'node:fs'
import { Worker } from 'node:worker_threads'

/** In a line handed to `AppendThread.append`, replaced by the write's time (ms, base 36). */
export const STAMP = '\u0001'

type Synced = { durable: number; at?: number; error?: { message: string; code?: string } }

interface Job {
  resolve: (r: { at: number; ms: number }) => void
  reject: (e: Error) => void
  /** The line's stamp, when its write began, and the file's end after it. */
  at: number
  began: number
  end: number
}

/**
 * A file appended to at once and flushed by a thread of its own (#33). Each
 * line is written where `append` is called, synchronously: a copy of a hundred
 * bytes into the page cache, microseconds, after which a kill -9 of the daemon
 * cannot take it back — no hop to another thread, no wait for a core or for
 * another line's flush. The sync thread (sync-worker.ts) runs one fdatasync at
 * a time for everything written so far, so an append resolves only when a
 * flush that covers it is done and the line survives a power cut too; neither
 * waits in the libuv pool behind file reads, record fsyncs or scrypt. The time
 * in each line (`STAMP`) is read just before its write; the reply gives it and
 * the time from it to durable. A write the disk takes only in part is cut
 * back, so the file always ends with whole writes (as `appendWhole`).
 */
export class AppendThread {
  /** The file's written end, a wake-up count and the stop flag (sync-worker.ts). */
  readonly #shared = new SharedArrayBuffer(24)
  readonly #state = new BigInt64Array(this.#shared)
  readonly #fd: number
  #size: number
  readonly #syncer: Worker
  readonly #pending = new Set<Job>()
  /** The file's end up to which everything is durable, and when that was known. */
  #durable: number
  /** How many fdatasyncs have made lines durable (each covers every line written before it began). */
  flushes = 0
  #closed: Promise<void> | undefined
  #drained: (() => void)[] = []

  /**
   * A file the sync thread notes each flush in (`<end of file> <ms>`, after `start <end of file>`):
   * how long each line took to be durable, readable after a kill -9.
   */
  readonly #flushLog: number | undefined

  /**
   * Opens (creating it, mode 0600) `path` for appending, and starts its sync thread. With
   * `flushLog`, each flush is noted there (the file started afresh): the reliability suite
   * reads it after each kill instead of asking the box just before, which stalled it then.
   */
  constructor(path: string, options: { flushLog?: string } = {}) {
    this.#fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o600)
    this.#size = this.#durable = fstatSync(this.#fd).size
    Atomics.store(this.#state, 0, BigInt(this.#size))
    this.#flushLog = options.flushLog ? openSync(options.flushLog, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600) : undefined
    // Where this file's appends begin: the lines before it (a compaction's) were made durable otherwise.
    if (this.#flushLog !== undefined) writeSync(this.#flushLog, `start ${this.#size}\n`)
    this.#syncer = new Worker(new URL('./sync-worker.ts', import.meta.url), {
      workerData: { fd: this.#fd, shared: this.#shared, from: this.#size, flushLog: this.#flushLog },
    })
    this.#syncer.on('message', (m: Synced) => this.#synced(m))
    this.#syncer.on('error', (err: Error) => this.#failAll(err))
    this.#syncer.on('exit', () => this.#failAll(new Error('the sync thread stopped')))
    this.#syncer.unref()
  }

  /** In the file when it returns, durable when it resolves: `text` with every `STAMP` replaced; with the stamp and the ms from it to durable. */
  append(text: string): Promise<{ at: number; ms: number }> {
    if (this.#closed) return Promise.reject(new Error('the file is closed'))
    const began = performance.timeOrigin + performance.now()
    const at = Math.floor(began)
    const data = Buffer.from(text.replaceAll(STAMP, at.toString(36)), 'latin1')
    try {
      const written = writeSync(this.#fd, data)
      if (written !== data.length) throw Object.assign(new Error(`write cut short (${written} of ${data.length} bytes)`), { code: 'ENOSPC' })
      this.#size += written
    } catch (err) {
      try {
        ftruncateSync(this.#fd, this.#size)
      } catch {
        // the next write finds the same trouble
      }
      return Promise.reject(err instanceof Error ? err : new Error(String(err)))
    }
    if (this.#pending.size === 0) this.#syncer.ref()
    Atomics.store(this.#state, 0, BigInt(this.#size))
    Atomics.add(this.#state, 1, 1n)
    Atomics.notify(this.#state, 1)
    return new Promise((resolve, reject) => this.#pending.add({ resolve, reject, at, began, end: this.#size }))
  }

  /** Closes the file and ends the sync thread once the writes already made are durable. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      if (this.#pending.size) await new Promise<void>((resolve) => this.#drained.push(resolve))
      const stopped = new Promise((resolve) => this.#syncer.once('exit', resolve))
      this.#syncer.ref()
      Atomics.store(this.#state, 2, 1n)
      Atomics.add(this.#state, 1, 1n)
      Atomics.notify(this.#state, 1)
      await stopped
      closeSync(this.#fd)
      if (this.#flushLog !== undefined) closeSync(this.#flushLog)
    })()
    return this.#closed
  }

  #synced(m: Synced): void {
    if (m.error) {
      // What that flush covered is not known to be on the disk: every append not yet durable fails.
      const err = Object.assign(new Error(m.error.message), m.error.code ? { code: m.error.code } : {})
      for (const job of this.#pending) this.#settle(job, err)
      return
    }
    this.flushes++
    this.#durable = Math.max(this.#durable, m.durable)
    for (const job of this.#pending) if (job.end <= this.#durable) this.#settle(job, undefined, m.at)
  }

  #settle(job: Job, err?: Error, durableAt = 0): void {
    this.#pending.delete(job)
    if (err) job.reject(err)
    else job.resolve({ at: job.at, ms: Math.max(0, durableAt - job.began) })
    if (this.#pending.size) return
    if (!this.#closed) this.#syncer.unref()
    for (const d of this.#drained.splice(0)) d()
  }

  #failAll(err: Error): void {
    for (const job of this.#pending) this.#settle(job, err)
  }
}
