import { boxError } from '../box-errors.ts'
import { SPOOL_STATES as STATES, type SpoolEntry, type SpoolState } from './types.ts'

const QUEUED = STATES.indexOf('queued')
const DEFERRED = STATES.indexOf('deferred')
const AWAITING = STATES.indexOf('awaiting')

/**
 * Slots waiting for delivery, ordered by next attempt time and then by the
 * order they were scheduled (FIFO among equals): a binary min-heap over typed
 * arrays. Entries are never removed from the middle; a slot that changed
 * since it was pushed carries a newer generation and its old heap entry is
 * dropped when it reaches the top.
 */
class DueHeap {
  #at = new Float64Array(1024)
  #order = new Float64Array(1024)
  #slot = new Uint32Array(1024)
  #gen = new Uint32Array(1024)
  #size = 0
  #counter = 0

  get size(): number {
    return this.#size
  }

  push(at: number, slot: number, gen: number): void {
    if (this.#size === this.#at.length) this.#grow()
    let i = this.#size++
    const order = this.#counter++
    // Sift up.
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!this.#less(at, order, this.#at[p]!, this.#order[p]!)) break
      this.#move(p, i)
      i = p
    }
    this.#put(i, at, order, slot, gen)
  }

  /** The earliest entry's time, or Infinity when empty. */
  peekAt(): number {
    return this.#size ? this.#at[0]! : Infinity
  }

  peekSlot(): number {
    return this.#slot[0]!
  }

  peekGen(): number {
    return this.#gen[0]!
  }

  pop(): void {
    const last = --this.#size
    if (last === 0) return
    this.#move(last, 0)
    this.#siftDownFrom(0)
  }

  /** Keeps only the entries `live` accepts, then restores heap order (O(n)). */
  compact(live: (slot: number, gen: number) => boolean): void {
    let n = 0
    for (let i = 0; i < this.#size; i++) {
      if (live(this.#slot[i]!, this.#gen[i]!)) {
        if (n !== i) this.#move(i, n)
        n++
      }
    }
    this.#size = n
    for (let i = (n >> 1) - 1; i >= 0; i--) this.#siftDownFrom(i)
  }

  #siftDownFrom(start: number): void {
    const at = this.#at[start]!
    const order = this.#order[start]!
    const slot = this.#slot[start]!
    const gen = this.#gen[start]!
    let i = start
    for (;;) {
      const l = 2 * i + 1
      if (l >= this.#size) break
      const r = l + 1
      const c = r < this.#size && this.#less(this.#at[r]!, this.#order[r]!, this.#at[l]!, this.#order[l]!) ? r : l
      if (!this.#less(this.#at[c]!, this.#order[c]!, at, order)) break
      this.#move(c, i)
      i = c
    }
    this.#put(i, at, order, slot, gen)
  }

  #less(a: number, ao: number, b: number, bo: number): boolean {
    return a < b || (a === b && ao < bo)
  }

  #move(from: number, to: number): void {
    this.#put(to, this.#at[from]!, this.#order[from]!, this.#slot[from]!, this.#gen[from]!)
  }

  #put(i: number, at: number, order: number, slot: number, gen: number): void {
    this.#at[i] = at
    this.#order[i] = order
    this.#slot[i] = slot
    this.#gen[i] = gen
  }

  #grow(): void {
    const n = this.#at.length * 2
    const at = new Float64Array(n)
    at.set(this.#at)
    const order = new Float64Array(n)
    order.set(this.#order)
    const slot = new Uint32Array(n)
    slot.set(this.#slot)
    const gen = new Uint32Array(n)
    gen.set(this.#gen)
    this.#at = at
    this.#order = order
    this.#slot = slot
    this.#gen = gen
  }
}

/**
 * The spool's in-memory index, kept small enough for millions of queued
 * messages (issue: 1M queued within 300 MB): one id string and one map entry
 * per message, the rest in typed arrays (epoch as a number into a small table,
 * times as doubles, state and attempts as small integers). Entries are handed
 * out as plain objects; changes go back through `update`.
 *
 * Queued and deferred entries are also in a due heap, so claiming the next
 * due mail costs O(log n) whatever the queue holds: a million deferred for a
 * destination that is down do not slow down the mail that is due, and the
 * oldest due mail goes first (also after a restart, whose directory order is
 * arbitrary).
 */
export class SpoolIndex {
  readonly #slots = new Map<string, number>()
  #ids: (string | undefined)[] = []
  #epoch = new Uint16Array(1024)
  #created = new Float64Array(1024)
  #next = new Float64Array(1024)
  #attempts = new Uint16Array(1024)
  #state = new Uint8Array(1024)
  /** Bumped on every change of a slot, so heap entries pushed before it are known stale. */
  #gen = new Uint32Array(1024)
  readonly #due = new DueHeap()
  readonly #free: number[] = []
  readonly #epochs: string[] = []
  readonly #epochNumbers = new Map<string, number>()

  get size(): number {
    return this.#slots.size
  }

  /** Entries in the due queue, stale ones included (kept within twice the index). */
  get dueQueueLength(): number {
    return this.#due.size
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
    this.#schedule(s)
  }

  update(id: string, change: Partial<Pick<SpoolEntry, 'state' | 'attempts' | 'nextAttemptAt'>>): SpoolEntry {
    const s = this.#slots.get(id)
    if (s === undefined) throw boxError('ECONTROL_REFUSED', `no spooled message ${id}`)
    if (change.state !== undefined) this.#state[s] = STATES.indexOf(change.state)
    if (change.attempts !== undefined) this.#attempts[s] = Math.min(change.attempts, 65535)
    if (change.nextAttemptAt !== undefined) this.#next[s] = change.nextAttemptAt
    this.#schedule(s)
    return this.#entry(s)
  }

  delete(id: string): void {
    const s = this.#slots.get(id)
    if (s === undefined) return
    this.#slots.delete(id)
    this.#ids[s] = undefined
    this.#gen[s]!++
    this.#free.push(s)
  }

  /**
   * Up to `limit` entries that are queued, deferred or awaiting with their next attempt
   * at or before `now`, earliest first, marked in flight.
   */
  claimDue(now: number, limit: number): SpoolEntry[] {
    const out: SpoolEntry[] = []
    while (out.length < limit && this.#due.peekAt() <= now) {
      const s = this.#due.peekSlot()
      const gen = this.#due.peekGen()
      this.#due.pop()
      if (gen !== this.#gen[s] || this.#ids[s] === undefined) continue // changed or gone since it was pushed
      this.#state[s] = STATES.indexOf('inflight')
      this.#gen[s]++
      out.push(this.#entry(s))
    }
    return out
  }

  /** The earliest next attempt among waiting entries (Infinity when none): when to look again. */
  nextDueAt(): number {
    while (this.#due.size && (this.#due.peekGen() !== this.#gen[this.#due.peekSlot()] || this.#ids[this.#due.peekSlot()] === undefined)) this.#due.pop()
    return this.#due.peekAt()
  }

  /** Entries that `pick` accepts, at most `limit`, in slot order, after the first `skip` of them (a page of a list). */
  select(limit: number, pick: (state: SpoolState, nextAttemptAt: number) => boolean, skip = 0): SpoolEntry[] {
    const out: SpoolEntry[] = []
    let skipped = 0
    for (let s = 0; s < this.#ids.length && out.length < limit; s++) {
      if (this.#ids[s] === undefined || !pick(STATES[this.#state[s]!]!, this.#next[s]!)) continue
      if (skipped < skip) skipped++
      else out.push(this.#entry(s))
    }
    return out
  }

  /** When the oldest mail still queued (in any state) was received, or undefined for an empty queue: one pass over a typed array. */
  oldestCreated(): number | undefined {
    let oldest = Infinity
    for (let s = 0; s < this.#ids.length; s++) if (this.#ids[s] !== undefined && this.#created[s]! < oldest) oldest = this.#created[s]!
    return oldest === Infinity ? undefined : oldest
  }

  /** The entries created at or after `t` (O(n); a start's look at the moments before a crash). */
  createdSince(t: number): SpoolEntry[] {
    const out: SpoolEntry[] = []
    for (let s = 0; s < this.#ids.length; s++) {
      const id = this.#ids[s]
      if (id !== undefined && this.#created[s]! >= t) out.push(this.get(id)!)
    }
    return out
  }

  /** Counts per state without materialising entries. */
  countByState(): Record<SpoolState, number> {
    const out = Object.fromEntries(STATES.map((state) => [state, 0])) as Record<SpoolState, number>
    for (let s = 0; s < this.#ids.length; s++) if (this.#ids[s] !== undefined) out[STATES[this.#state[s]!]!]++
    return out
  }

  *values(): IterableIterator<SpoolEntry> {
    for (let s = 0; s < this.#ids.length; s++) if (this.#ids[s] !== undefined) yield this.#entry(s)
  }

  ids(): string[] {
    return [...this.#slots.keys()]
  }

  /** A changed slot: older heap entries become stale; a waiting one gets a new entry. */
  #schedule(s: number): void {
    this.#gen[s]!++
    const state = this.#state[s]
    if (state === QUEUED || state === DEFERRED || state === AWAITING) {
      this.#due.push(this.#next[s]!, s, this.#gen[s]!)
      // Stale entries pile up when waiting mail is changed again and again (holds,
      // releases): keep the heap within twice the index.
      if (this.#due.size > 2 * this.#slots.size + 1024) this.#due.compact((slot, gen) => gen === this.#gen[slot] && this.#ids[slot] !== undefined)
    }
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
    const grow = <T extends Uint8Array | Uint16Array | Uint32Array | Float64Array>(a: T, make: (n: number) => T): T => {
      const b = make(size)
      b.set(a)
      return b
    }
    this.#epoch = grow(this.#epoch, (n) => new Uint16Array(n))
    this.#created = grow(this.#created, (n) => new Float64Array(n))
    this.#next = grow(this.#next, (n) => new Float64Array(n))
    this.#attempts = grow(this.#attempts, (n) => new Uint16Array(n))
    this.#state = grow(this.#state, (n) => new Uint8Array(n))
    this.#gen = grow(this.#gen, (n) => new Uint32Array(n))
  }
}
