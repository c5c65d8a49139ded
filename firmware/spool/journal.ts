import { constants } from 'node:fs'
import { open, readFile, type FileHandle } from 'node:fs/promises'
import { appendWhole, replaceFile } from '../../hal/storage/files.ts'
import { GroupCommit } from '../../hal/storage/group.ts'

/** A message's state as the journal records it; a message absent from the journal is queued. */
export interface JournalState {
  state: 'deferred' | 'held' | 'final' | 'awaiting'
  attempts: number
  nextAttemptAt: number
  /** Recipients of a partly delivered mail that need no more attempts (`encodeDone`), or an awaiting statement's sends (`encodeWait`); never addresses. */
  done?: string
}

const CODES = { deferred: 'D', held: 'H', final: 'F', queued: 'Q', awaiting: 'A' } as const

/**
 * The spool's state journal: one line per transition, appended and made
 * durable before the transition is acted on. Appends from concurrent callers
 * are group-committed: whoever arrives while a flush is running joins the next
 * one, so many transitions share one durable write.
 */
export class Journal {
  readonly #path: string
  #fh: FileHandle | undefined
  /** The journal's length as written: a write the disk takes only part of is cut back to it. */
  #size = 0
  readonly #commit = new GroupCommit<string>((lines) => this.#write(lines))

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
        const state = code === 'D' ? 'deferred' : code === 'H' ? 'held' : code === 'F' ? 'final' : code === 'A' ? 'awaiting' : undefined
        if (state) out.set(id, { state, attempts: Number(attempts), nextAttemptAt: parseInt(next, 36), ...(done ? { done } : {}) })
      }
    }
    return out
  }

  /** Replaces the journal with just these entries (atomic), then opens it for appending. */
  async compact(entries: Iterable<[string, JournalState]>): Promise<void> {
    const lines: string[] = []
    for (const [id, s] of entries) lines.push(line(id, s.state, s.attempts, s.nextAttemptAt, s.done))
    await replaceFile(this.#path, (fh) => fh.writeFile(lines.join('')))
    // O_DSYNC: each write is on the disk when it returns — one call into the thread pool per
    // group instead of a write and an fdatasync, which halves the time from a receiver's 250
    // to the journal saying so (the window in which a crash sends the mail twice).
    this.#fh = await open(this.#path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_DSYNC, 0o600)
    this.#size = (await this.#fh.stat()).size
  }

  /** Durable when it resolves; appends from concurrent callers share one write. */
  append(id: string, state: JournalState['state'] | 'queued', attempts: number, nextAttemptAt: number, done?: string): Promise<void> {
    return this.#commit.add(line(id, state, attempts, nextAttemptAt, done))
  }

  async close(): Promise<void> {
    await this.#commit.idle()
    await this.#fh?.close()
    this.#fh = undefined
  }

  async #write(lines: string[]): Promise<void> {
    if (!this.#fh) throw new Error('journal is not open')
    // O_DSYNC makes the write itself durable; a torn one is cut back (appendWhole).
    this.#size = await appendWhole(this.#fh, Buffer.from(lines.join(''), 'latin1'), this.#size, false)
  }
}

function line(id: string, state: JournalState['state'] | 'queued', attempts: number, next: number, done?: string): string {
  return `${id} ${CODES[state]} ${attempts} ${Math.max(0, Math.floor(next)).toString(36)}${done ? ` ${done}` : ''}\n`
}
