import type { SpoolEntry, SpoolState } from './spool.ts'

const STATES: SpoolState[] = ['queued', 'inflight', 'deferred', 'held']

/**
 * The spool's in-memory index, kept small enough for millions of queued
 * messages (issue: 1M queued within 300 MB): one id string and one map entry
 * per message, the rest in typed arrays (epoch as a number into a small table,
 * times as doubles, state and attempts as small integers). Entries are handed
 * out as plain objects; changes go back through `update`.
 */
export class SpoolIndex {
  readonly #slots = new Map<string, number>()
  #ids: (string | undefined)[] = []
  #epoch = new Uint16Array(1024)
  #created = new Float64Array(1024)
  #next = new Float64Array(1024)
  #attempts = new Uint16Array(1024)
  #state = new Uint8Array(1024)
  readonly #free: number[] = []
  readonly #epochs: string[] = []
  readonly #epochNumbers = new Map<string, number>()

  get size(): number {
    return this.#slots.size
  }

  has(id: string): boolean {
    return this.#slots.has(id)
  }

  get(id: string): SpoolEntry | undefined {
    const s = this.#slots.get(id)
    return s === undefined ? undefined : this.#entry(s)
  }

  set(e: SpoolEntry): void {
    let s = this.#slots.get(e.id)
    if (s === undefined) {
      s = this.#free.pop() ?? this.#ids.length
      if (s >= this.#epoch.length) this.#grow()
      this.#slots.set(e.id, s)
      this.#ids[s] = e.id
    }
    this.#write(s, e)
  }

  update(id: string, change: Partial<Pick<SpoolEntry, 'state' | 'attempts' | 'nextAttemptAt'>>): SpoolEntry {
    const s = this.#slots.get(id)
    if (s === undefined) throw new Error(`no spooled message ${id}`)
    if (change.state !== undefined) this.#state[s] = STATES.indexOf(change.state)
    if (change.attempts !== undefined) this.#attempts[s] = Math.min(change.attempts, 65535)
    if (change.nextAttemptAt !== undefined) this.#next[s] = change.nextAttemptAt
    return this.#entry(s)
  }

  delete(id: string): void {
    const s = this.#slots.get(id)
    if (s === undefined) return
    this.#slots.delete(id)
    this.#ids[s] = undefined
    this.#free.push(s)
  }

  /** Entries that `pick` accepts, at most `limit`, in slot order. */
  select(limit: number, pick: (state: SpoolState, nextAttemptAt: number) => boolean): SpoolEntry[] {
    const out: SpoolEntry[] = []
    for (let s = 0; s < this.#ids.length && out.length < limit; s++) {
      if (this.#ids[s] !== undefined && pick(STATES[this.#state[s]!]!, this.#next[s]!)) out.push(this.#entry(s))
    }
    return out
  }

  /** Counts per state without materialising entries. */
  countByState(): Record<SpoolState, number> {
    const out: Record<SpoolState, number> = { queued: 0, inflight: 0, deferred: 0, held: 0 }
    for (let s = 0; s < this.#ids.length; s++) if (this.#ids[s] !== undefined) out[STATES[this.#state[s]!]!]++
    return out
  }

  *values(): IterableIterator<SpoolEntry> {
    for (let s = 0; s < this.#ids.length; s++) if (this.#ids[s] !== undefined) yield this.#entry(s)
  }

  ids(): string[] {
    return [...this.#slots.keys()]
  }

  #entry(s: number): SpoolEntry {
    return {
      id: this.#ids[s]!,
      epoch: this.#epochs[this.#epoch[s]!]!,
      created: this.#created[s]!,
      state: STATES[this.#state[s]!]!,
      attempts: this.#attempts[s]!,
      nextAttemptAt: this.#next[s]!,
    }
  }

  #write(s: number, e: SpoolEntry): void {
    let n = this.#epochNumbers.get(e.epoch)
    if (n === undefined) {
      n = this.#epochs.length
      this.#epochs.push(e.epoch)
      this.#epochNumbers.set(e.epoch, n)
    }
    this.#epoch[s] = n
    this.#created[s] = e.created
    this.#next[s] = e.nextAttemptAt
    this.#attempts[s] = Math.min(e.attempts, 65535)
    this.#state[s] = STATES.indexOf(e.state)
  }

  #grow(): void {
    const size = this.#epoch.length * 2
    const grow = <T extends Uint8Array | Uint16Array | Float64Array>(a: T, make: (n: number) => T): T => {
      const b = make(size)
      b.set(a)
      return b
    }
    this.#epoch = grow(this.#epoch, (n) => new Uint16Array(n))
    this.#created = grow(this.#created, (n) => new Float64Array(n))
    this.#next = grow(this.#next, (n) => new Float64Array(n))
    this.#attempts = grow(this.#attempts, (n) => new Uint16Array(n))
    this.#state = grow(this.#state, (n) => new Uint8Array(n))
  }
}
