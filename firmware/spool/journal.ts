import { readFile } from 'node:fs/promises'
import { AppendThread, STAMP } from '../../hal/storage/append-thread.ts'
import { replaceFile } from '../../hal/storage/files.ts'
import { Percentiles } from '../percentiles.ts'
import { boxError } from '../box-errors.ts'

/** A message's state as the journal records it; a message absent from the journal is queued. */
export interface JournalState {
  state: 'deferred' | 'held' | 'final' | 'awaiting'
  attempts: number
  nextAttemptAt: number
  /** Recipients of a partly delivered mail that need no more attempts (`encodeDone`), or an awaiting statement's sends (`encodeWait`); never addresses. */
  done?: string
}

/**
 * #33: a recipient transaction's outcome, journalled the moment the receiver's reply after
 * DATA is read — before the mail's next transaction, its notices, the audit trail or its
 * final state. Until a state line follows it (written once the trail has the attempt), it is
 * "unconfirmed": a restart resumes from it (those recipients are not sent again) and
 * records what the trail may have lost.
 */
export interface ProgressNote {
  /** Every recipient of the mail final so far, this transaction's included (`encodeDone`). */
  done: string
  /** Which transaction: `<attempt>.<n>` (the attempt's number, the transaction's within it). */
  transaction: string
  /** Wall-clock time the line was written (ms). */
  at: number
  /** What the trail and the firm must have of it, if they lost it: no addresses, only indexes and redacted words. */
  replay: ProgressReplay
}

export interface ProgressReplay {
  /** The audit trail's last durable record when the note was written: the trail is searched after it. */
  trailSeq: number
  mx: string | undefined
  sourceIp: string | undefined
  tls: string | undefined
  /** The transaction's final outcomes (a 250 for some, a 5xx at RCPT for others): recipients as indexes, the reply redacted. */
  results: { outcome: 'delivered' | 'bounced'; recipients: number[]; reply: string }[]
}

/** The journal at start: each mail's last state, and the progress notes after it that no state line confirmed. */
export interface JournalLoad {
  states: Map<string, JournalState | 'queued'>
  progress: Map<string, ProgressNote[]>
}

const CODES = { deferred: 'D', held: 'H', final: 'F', queued: 'Q', awaiting: 'A' } as const

/**
 * The spool's state journal: one line per transition, appended and made
 * durable before the transition is acted on. Each line is written the moment
 * it is asked for; the flushes are grouped on the journal's sync thread
 * (append-thread.ts), so many transitions share one fdatasync and none waits
 * for another's to be written.
 */
export class Journal {
  readonly #path: string
  /**
   * #33: the journal's own writer and sync threads. A receiver's 250 is recorded without waiting for a
   * thread of the libuv pool (shared with record writes, reads and fsyncs), and its line is in the file
   * (safe from a kill -9) without waiting for another line's flush (docs/reliability.md has the figures).
   */
  #out: AppendThread | undefined
  /**
   * #33: from a line's stamp to its flush returning durable (ms): what the stamp in a line leaves
   * out (the disk's time), for status and the reliability suite.
   */
  readonly writes = new Percentiles(4096)
  /** #33: what asking for a line costs the event loop (ms): a message to the writer thread. */
  readonly lineWrites = new Percentiles(4096)
  /** The last lines' stamps and times to durable, in pairs (the reliability suite pairs each line with its write). */
  readonly #recent = new Float64Array(2 * 4096)
  #recentN = 0

  constructor(path: string) {
    this.#path = path
  }

  /**
   * Replays the journal into the latest state per id, and the progress notes written after it
   * (a truncated last line from a crash is ignored). Lines are `id code attempts next done stamp`,
   * a progress note `id P attempts 0 done stamp transaction replay`; older journals have no stamp.
   */
  async load(): Promise<JournalLoad> {
    const states = new Map<string, JournalState | 'queued'>()
    const progress = new Map<string, ProgressNote[]>()
    let text = ''
    try {
      text = await readFile(this.#path, 'latin1')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    for (const line of text.split('\n')) {
      const [id, code, attempts, next, done, stamp, transaction, replay] = line.split(' ')
      if (!id || !code || next === undefined) continue
      if (code === 'P') {
        const note = progressNote(done, stamp, transaction, replay)
        if (!note) continue
        const notes = progress.get(id)
        if (notes) notes.push(note)
        else progress.set(id, [note])
        continue
      }
      // A state line confirms the notes before it: the attempt they belong to is in the trail.
      progress.delete(id)
      if (code === 'Q') states.set(id, 'queued')
      else {
        const state = code === 'D' ? 'deferred' : code === 'H' ? 'held' : code === 'F' ? 'final' : code === 'A' ? 'awaiting' : undefined
        if (state) states.set(id, { state, attempts: Number(attempts), nextAttemptAt: parseInt(next, 36), ...(done ? { done } : {}) })
      }
    }
    return { states, progress }
  }

  /**
   * Replaces the journal with just these entries and the unconfirmed progress notes (atomic),
   * then opens it for appending.
   */
  async compact(entries: Iterable<[string, JournalState]>, progress: Iterable<[string, readonly ProgressNote[]]> = []): Promise<void> {
    const lines: string[] = []
    const now = Date.now()
    for (const [id, s] of entries) lines.push(line(id, s.state, s.attempts, s.nextAttemptAt, s.done, b36(now)))
    for (const [id, notes] of progress) for (const n of notes) lines.push(progressLine(id, n, b36(n.at)))
    await this.close()
    await replaceFile(this.#path, (fh) => fh.writeFile(lines.join('')))
    // SG_JOURNAL_FLUSH_LOG=1 (the reliability suite): each flush noted beside the journal, for its kill runs.
    this.#out = new AppendThread(this.#path, process.env.SG_JOURNAL_FLUSH_LOG === '1' ? { flushLog: `${this.#path}.flushes` } : {})
  }

  /** The last (up to 4,096) lines written: each one's stamp and its time from stamp to durable (ms). */
  recentWrites(): [number, number][] {
    const out: [number, number][] = []
    for (let i = 0; i < Math.min(this.#recentN, 4096); i++) out.push([this.#recent[2 * i]!, this.#recent[2 * i + 1]!])
    return out
  }

  /** Durable when it resolves: a recipient transaction's outcome (#33). */
  appendProgress(id: string, note: ProgressNote): Promise<void> {
    return this.#write(progressLine(id, note, STAMP))
  }

  /** Durable when it resolves; concurrent callers' lines share one flush. */
  append(id: string, state: JournalState['state'] | 'queued', attempts: number, nextAttemptAt: number, done?: string): Promise<void> {
    return this.#write(line(id, state, attempts, nextAttemptAt, done, STAMP))
  }

  /** Once every line asked for is durable (AppendThread.close waits for them). */
  async close(): Promise<void> {
    await this.#out?.close()
    this.#out = undefined
  }

  /** Handed to the writer thread at once; the promise resolves once the line is durable. */
  #write(text: string): Promise<void> {
    const out = this.#out
    if (!out) return Promise.reject(boxError('EINTERNAL', 'journal is not open'))
    const t0 = performance.now()
    // The writer thread stamps, writes and cuts back a torn write (append-thread.ts).
    const appended = out.append(text)
    this.lineWrites.add(performance.now() - t0)
    return this.#durable(appended)
  }

  async #durable(appended: Promise<{ at: number; ms: number }>): Promise<void> {
    const { at, ms } = await appended
    this.writes.add(ms)
    const i = (this.#recentN++ % 4096) * 2
    this.#recent[i] = at
    this.#recent[i + 1] = ms
  }
}

const b36 = (n: number) => Math.max(0, Math.floor(n)).toString(36)

/** A state line, stamped with the wall-clock time it is written (#33: the reliability suite measures from it). */
function line(id: string, state: JournalState['state'] | 'queued', attempts: number, next: number, done: string | undefined, stamp: string): string {
  return `${id} ${CODES[state]} ${attempts} ${b36(next)} ${done ?? ''} ${stamp}\n`
}

function progressLine(id: string, n: ProgressNote, stamp: string): string {
  return `${id} P 0 0 ${n.done} ${stamp} ${n.transaction} ${Buffer.from(JSON.stringify(n.replay)).toString('base64url')}\n`
}

function progressNote(done?: string, stamp?: string, transaction?: string, replay?: string): ProgressNote | undefined {
  if (done === undefined || !stamp || !transaction || !replay) return undefined
  try {
    return { done, at: parseInt(stamp, 36), transaction, replay: JSON.parse(Buffer.from(replay, 'base64url').toString('utf8')) as ProgressReplay }
  } catch {
    return undefined // a line cut by a crash in the middle of its payload
  }
}
