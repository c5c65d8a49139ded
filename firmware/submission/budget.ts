/**
 * Bytes of mail the box holds in memory while receiving, checking and signing
 * it (S11, S12: the service keeps running whatever clients send). Each
 * message is counted at `copies` × its size — the copies reading, inspecting
 * and signing make before the spool has it on disk. A new transaction is
 * refused (452 4.3.1, the client retries) while the budget is spent, and a
 * message that would overrun it is read to its end without being kept; one
 * message is always admitted when nothing else is held, so a message larger
 * than the budget is slow, not impossible.
 */
export class MemoryBudget {
  readonly limit: number
  readonly copies: number
  #used = 0
  #peak = 0

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

  /** Room for a new transaction (declaring `size` bytes, if it did)? */
  admits(size = 0): boolean {
    if (this.#used === 0) return true
    return this.#used + size * this.copies < this.limit
  }

  /** Reserves `bytes` of message (counted × copies); false when that would overrun the budget. */
  reserve(bytes: number, alreadyHeld: number): boolean {
    const n = bytes * this.copies
    if (this.#used + n > this.limit && this.#used - alreadyHeld * this.copies > 0) return false
    this.#used += n
    if (this.#used > this.#peak) this.#peak = this.#used
    return true
  }

  release(bytes: number): void {
    this.#used = Math.max(0, this.#used - bytes * this.copies)
  }
}
