import { constants } from 'node:fs'
import { open, readFile, rename, type FileHandle } from 'node:fs/promises'
import { fsyncDir } from '../../hal/storage/files.ts'
import { dirname } from 'node:path'

/** A message's state as the journal records it; a message absent from the journal is queued. */
export interface JournalState {
  state: 'deferred' | 'held' | 'final'
  attempts: number
  nextAttemptAt: number
  /** Recipients of a partly delivered mail that need no more attempts (`encodeDone`); never addresses. */
  done?: string
}

const CODES = { deferred: 'D', held: 'H', final: 'F', queued: 'Q' } as const

/**
 * The spool's state journal: one line per transition, appended and made
 * durable before the transition is acted on. Appends from concurrent callers
 * are group-committed: whoever arrives while a flush is running joins the next
 * one, so many transitions share one fdatasync.
 */
export class Journal {
  readonly #path: string
  #fh: FileHandle | undefined
  /** The journal's length as written: a write the disk takes only part of is cut back to it. */
  #size = 0
  #pending: { line: string; resolve: () => void; reject: (e: Error) => void }[] = []
  #flushing: Promise<void> | undefined

  constructor(path: string) {
    this.#path = path
  }

  /** Replays the journal into the latest state per id (a truncated last line from a crash is ignored). */
  async load(): Promise<Map<string, JournalState | 'queued'>> {
    const out = new Map<string, JournalState | 'queued'>()
    let text = ''
    try {
      text = await readFile(this.#path, 'latin1')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    for (const line of text.split('\n')) {
      const [id, code, attempts, next, done] = line.split(' ')
      if (!id || !code || next === undefined) continue
      if (code === 'Q') out.set(id, 'queued')
      else {
        const state = code === 'D' ? 'deferred' : code === 'H' ? 'held' : code === 'F' ? 'final' : undefined
        if (state) out.set(id, { state, attempts: Number(attempts), nextAttemptAt: parseInt(next, 36), ...(done ? { done } : {}) })
      }
    }
    return out
  }

  /** Replaces the journal with just these entries (atomic), then opens it for appending. */
  async compact(entries: Iterable<[string, JournalState]>): Promise<void> {
    const tmp = `${this.#path}.tmp`
    const fh = await open(tmp, 'w', 0o600)
    const lines: string[] = []
    for (const [id, s] of entries) lines.push(line(id, s.state, s.attempts, s.nextAttemptAt, s.done))
    await fh.writeFile(lines.join(''))
    await fh.datasync()
    await fh.close()
    await rename(tmp, this.#path)
    fsyncDir(dirname(this.#path))
    // O_DSYNC: each write is on the disk when it returns — one call into the thread pool per
    // group instead of a write and an fdatasync, which halves the time from a receiver's 250
    // to the journal saying so (the window in which a crash sends the mail twice).
    this.#fh = await open(this.#path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_DSYNC, 0o600)
    this.#size = (await this.#fh.stat()).size
  }

  append(id: string, state: JournalState['state'] | 'queued', attempts: number, nextAttemptAt: number, done?: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ line: line(id, state, attempts, nextAttemptAt, done), resolve, reject })
      void this.#kick()
    })
  }

  async close(): Promise<void> {
    while (this.#flushing || this.#pending.length) await (this.#flushing ?? this.#kick())
    await this.#fh?.close()
    this.#fh = undefined
  }

  /**
   * Starts a flush unless one is running. A line added while the running flush
   * is finishing (after its last look at the queue) is picked up by the check
   * in `finally`, which starts the next flush: no append waits for another.
   */
  #kick(): Promise<void> {
    if (this.#flushing) return this.#flushing
    this.#flushing = this.#flushAll().finally(() => {
      this.#flushing = undefined
      if (this.#pending.length) void this.#kick()
    })
    return this.#flushing
  }

  async #flushAll(): Promise<void> {
    while (this.#pending.length) {
      const batch = this.#pending
      this.#pending = []
      try {
        const fh = this.#fh
        if (!fh) throw new Error('journal is not open')
        const bytes = Buffer.from(batch.map((b) => b.line).join(''), 'latin1')
        const size = this.#size
        try {
          // A full disk can take part of a write: cut it back, or the next line would be glued to a torn one.
          const { bytesWritten } = await fh.write(bytes)
          if (bytesWritten !== bytes.length) throw Object.assign(new Error(`journal write cut short (${bytesWritten} of ${bytes.length} bytes)`), { code: 'ENOSPC' })
          this.#size = size + bytesWritten
        } catch (err) {
          await fh.truncate(size).catch(() => {})
          throw err
        }
        for (const b of batch) b.resolve()
      } catch (err) {
        for (const b of batch) b.reject(err as Error)
      }
    }
  }
}

function line(id: string, state: JournalState['state'] | 'queued', attempts: number, next: number, done?: string): string {
  return `${id} ${CODES[state]} ${attempts} ${Math.max(0, Math.floor(next)).toString(36)}${done ? ` ${done}` : ''}\n`
}
