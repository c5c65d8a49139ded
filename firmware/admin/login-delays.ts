import type { Clock } from '../../hal/clock.ts'

/** Failures older than this no longer slow an address. */
const WINDOW_MS = 15 * 60_000
/** Addresses remembered at once; the oldest are forgotten first. */
const MAX_ADDRESSES = 10_000

/**
 * #31: a progressive delay per client address before a login is answered —
 * after one failure from an address, its next attempt waits `base` (1 s by
 * default), then 2, 4 and at most 8 × `base` — so guessing is slow from
 * every address, while the lock after five failures (S3) stays. A success
 * clears the address's count.
 */
export class LoginDelays {
  readonly #base: number
  readonly #clock: Clock
  readonly #failures = new Map<string, number[]>()

  constructor(baseMs: number, clock: Clock) {
    this.#base = baseMs
    this.#clock = clock
  }

  /** How long the next attempt from `address` waits before it is answered. */
  before(address: string): number {
    const n = this.#recent(address).length
    return n === 0 ? 0 : this.#base * Math.min(8, 2 ** (n - 1))
  }

  failed(address: string): void {
    const times = [...this.#recent(address), this.#clock.now()]
    this.#failures.delete(address)
    this.#failures.set(address, times)
    if (this.#failures.size > MAX_ADDRESSES) this.#failures.delete(this.#failures.keys().next().value!)
  }

  succeeded(address: string): void {
    this.#failures.delete(address)
  }

  #recent(address: string): number[] {
    const now = this.#clock.now()
    return (this.#failures.get(address) ?? []).filter((t) => now - t < WINDOW_MS)
  }
}
