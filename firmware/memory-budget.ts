/**
 * Bytes of mail a listener holds in memory while it receives them (S11, S12:
 * the service keeps running whatever clients send). Each byte is counted
 * `copies` times — the copies reading, checking and signing make before the
 * mail is on disk.
 *
 * Room is given in arrival order (#29): a transaction is admitted with a hold
 * on some room (what its client declared, or a first reservation), or turned
 * away before it sends its data. A transaction whose data outgrows its hold
 * takes more room as it arrives; when there is none, the most recently
 * admitted transactions still reading give way — their holds are released at
 * once and they end with a temporary failure — so those that came first
 * complete, instead of all of them running the budget out together and every
 * one failing. One transaction is always admitted when nothing else is held,
 * so a message larger than the budget is slow, not impossible.
 */
export class MemoryBudget {
  readonly limit: number
  readonly copies: number
  #used = 0
  #peak = 0
  #seq = 0
  /** Holds of transactions still reading their data, oldest first (the ones that may give way). */
  readonly #reading = new Set<Hold>()
  /** How many transactions gave way to older ones (status, tests). */
  evictions = 0

  constructor(limit: number, copies = 4) {
    this.limit = limit
    this.copies = copies
  }

  get used(): number {
    return this.#used
  }

  /** The most ever held at once (for status and tests). */
  get peak(): number {
    return this.#peak
  }

  /** A new transaction with room for `bytes` of message now, or undefined: no room (452 before its data). */
  admit(bytes: number): Hold | undefined {
    const n = bytes * this.copies
    if (this.#used > 0 && this.#used + n > this.limit) return undefined
    const hold = new Hold(this, ++this.#seq)
    this.#take(n)
    hold.held = bytes
    return hold
  }

  /** @internal Hold.reading: its data is arriving; from now until it settles it may give way to older transactions. */
  reading(hold: Hold): void {
    if (!hold.evicted && !hold.released) this.#reading.add(hold)
  }

  #take(n: number): void {
    this.#used += n
    if (this.#used > this.#peak) this.#peak = this.#used
  }

  /** @internal Hold.grow: room for `extra` more bytes of `hold`, made by younger readers giving way if need be. */
  grow(hold: Hold, extra: number): boolean {
    const n = extra * this.copies
    while (this.#used + n > this.limit && this.#used - hold.held * this.copies > 0) {
      let youngest: Hold | undefined
      for (const h of this.#reading) if (h.seq > hold.seq && (!youngest || h.seq > youngest.seq)) youngest = h
      if (!youngest) {
        this.evict(hold)
        return false
      }
      this.evict(youngest)
    }
    this.#take(n)
    hold.held += extra
    return true
  }

  /** @internal */
  evict(hold: Hold): void {
    this.evictions++
    hold.evicted = true
    this.release(hold)
    hold.onEvict?.()
  }

  /** @internal The hold's data is all there: it no longer gives way, and keeps `bytes` until released. */
  settle(hold: Hold, bytes: number): void {
    this.#reading.delete(hold)
    if (hold.evicted || hold.released) return
    const diff = bytes - hold.held
    if (diff > 0) this.#take(diff * this.copies)
    else this.#used = Math.max(0, this.#used + diff * this.copies)
    hold.held = bytes
  }

  /** @internal */
  release(hold: Hold): void {
    this.#reading.delete(hold)
    if (hold.released) return
    hold.released = true
    this.#used = Math.max(0, this.#used - hold.held * this.copies)
    hold.held = 0
  }
}

/** One transaction's room in a MemoryBudget. */
export class Hold {
  readonly #budget: MemoryBudget
  /** Admission order: younger holds give way to older ones. */
  readonly seq: number
  /** Bytes of message held (counted × copies in the budget). */
  held = 0
  /** It gave way to an older transaction: its data is read and dropped, and it ends with a temporary failure. */
  evicted = false
  released = false
  /** Called when it gives way: whoever reads the data drops what it kept, so the memory goes with the room. */
  onEvict: (() => void) | undefined

  constructor(budget: MemoryBudget, seq: number) {
    this.#budget = budget
    this.seq = seq
  }

  /** Its data starts to arrive (until then an admitted transaction keeps its room whatever happens). */
  reading(): void {
    this.#budget.reading(this)
  }

  /** Room for `total` bytes of message in all; false when there is none (the hold is then released and `evicted`). */
  grow(total: number): boolean {
    if (this.evicted || this.released) return false
    const extra = total - this.held
    return extra <= 0 || this.#budget.grow(this, extra)
  }

  /** The whole message (`bytes`) has arrived: the hold no longer gives way and shrinks (or grows) to it. */
  settle(bytes: number): void {
    this.#budget.settle(this, bytes)
  }

  release(): void {
    this.#budget.release(this)
  }
}
