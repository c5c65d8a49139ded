import { Duplex } from 'node:stream'
import type { Socket } from 'node:net'
import type { Clock } from '../clock.ts'
import { halError } from '../errors.ts'

/**
 * The sliding window's slots: 1 ms, the clock's step. A real second touches 1,001 of them
 * (its first and last only in part): a second counted as 1,000 slots let two large grants a
 * millisecond apart into one real second (#35: a receiver then saw 104 % of the cap in its
 * busiest second). The window is longer still by the time a granted byte may take to reach
 * the wire — a few milliseconds when the box's threads wait for a core — so a second as the
 * receiver counts it holds no more than the budget either.
 */
const SLOT_MS = 1
const WIRE_JITTER_MS = 2
const WINDOW_SLOTS = (1000 + WIRE_JITTER_MS) / SLOT_MS + 1

/**
 * What was granted in the last second, in 1-ms slots (#35): lets a budget
 * make up for a moment with nothing to send while no 1-second window goes
 * over it.
 */
class LastSecond {
  readonly #slots = new Float64Array(WINDOW_SLOTS)
  #sum = 0
  /** The newest slot's number (time ÷ SLOT_MS). */
  #at = 0

  #advance(now: number): void {
    const slot = Math.floor(now / SLOT_MS)
    if (slot <= this.#at) return
    if (slot - this.#at >= WINDOW_SLOTS) {
      this.#slots.fill(0)
      this.#sum = 0
    } else
      for (let s = this.#at + 1; s <= slot; s++) {
        const i = s % WINDOW_SLOTS
        this.#sum -= this.#slots[i]!
        this.#slots[i] = 0
      }
    this.#at = slot
  }

  sum(now: number): number {
    this.#advance(now)
    return this.#sum
  }

  add(now: number, n: number): void {
    this.#advance(now)
    this.#slots[this.#at % WINDOW_SLOTS]! += n
    this.#sum += n
  }

  /** When at least `bytes` granted so far will have left the window (the oldest go first). */
  freedAt(bytes: number): number {
    let freed = 0
    for (let s = this.#at - WINDOW_SLOTS + 1; s <= this.#at; s++) {
      freed += this.#slots[((s % WINDOW_SLOTS) + WINDOW_SLOTS) % WINDOW_SLOTS]!
      if (freed >= bytes) return (s + WINDOW_SLOTS) * SLOT_MS
    }
    return (this.#at + WINDOW_SLOTS) * SLOT_MS
  }
}

/**
 * A budget shared by every outbound socket (M3), as GCRA (virtual
 * scheduling, the token bucket's exact equivalent): each grant of n bytes moves
 * the theoretical arrival time on by n / rate, and a grant may run ahead of
 * the clock by at most the burst. Late timers therefore cost no capacity
 * while writers are waiting. Writers are served in order.
 *
 * With `everySecond` (the byte budgets), no 1-second window may hold more
 * than a second's budget either. The burst is then what makes up for a moment
 * with nothing to send — a connection between two mails, a reconnect — and it
 * can be generous without any second going over (#35: with a 0.5 % burst and
 * no window, a receiver saw 97.7–98.7 % of the cap on average, and 100.2–100.6 %
 * in its busiest second).
 */
export class ByteRateLimiter {
  #rate: number
  #tau: number
  readonly #clock: Clock
  readonly #window: LastSecond | undefined
  #tat: number
  #queue: { n: number; resolve: () => void }[] = []
  #timer: NodeJS.Timeout | undefined
  /** Bytes let through since creation (for metrics and benchmarks). */
  passed = 0

  /**
   * `burstBytes` 0 chooses the default: 10 % of a second's budget (at least 4 KiB) with
   * `everySecond`, else 0.5 %.
   */
  constructor(opts: { bytesPerSecond: number; burstBytes: number; clock: Clock; everySecond?: boolean }) {
    this.#window = opts.everySecond ? new LastSecond() : undefined
    this.#rate = opts.bytesPerSecond / 1000 // bytes per ms
    this.#tau = this.#burst(opts.bytesPerSecond, opts.burstBytes) / this.#rate
    this.#clock = opts.clock
    this.#tat = opts.clock.now()
  }

  /** An egress byte budget (M3): on the wall clock, no second above it (`everySecond`). */
  static egressBudget(bytesPerSecond: number, burstBytes: number): ByteRateLimiter {
    return new ByteRateLimiter({ bytesPerSecond, burstBytes, clock: { now: () => Date.now() }, everySecond: true })
  }

  #burst(bytesPerSecond: number, burstBytes: number): number {
    return burstBytes || Math.max(4096, Math.floor(bytesPerSecond / (this.#window ? 10 : 200)))
  }

  /** A new budget from now on (S7: a bandwidth change approved on the admin page); grants already scheduled keep theirs. */
  setRate(bytesPerSecond: number, burstBytes: number): void {
    this.#rate = bytesPerSecond / 1000
    this.#tau = this.#burst(bytesPerSecond, burstBytes) / this.#rate
  }

  get bytesPerSecond(): number {
    return this.#rate * 1000
  }

  /** How far a grant may run ahead of the clock, in bytes (the burst). */
  get burstBytes(): number {
    return this.#tau * this.#rate
  }

  /**
   * Bytes a writer could be granted at once right now without running the
   * schedule past the burst or the last second past the budget: 0 while others
   * wait (they go first), the whole burst when the budget has been idle (#35:
   * writes sized to the grant).
   */
  headroom(): number {
    if (this.#queue.length) return 0
    const now = this.#clock.now()
    const ahead = (now + this.#tau - Math.max(this.#tat, now)) * this.#rate
    const second = this.#window ? this.#rate * 1000 - this.#window.sum(now) : Infinity
    return Math.max(0, Math.floor(Math.min(ahead, second)))
  }

  /** Resolves when `n` bytes may be written. */
  take(n: number): Promise<void> {
    return new Promise((resolve) => {
      this.#queue.push({ n, resolve })
      this.#drain()
    })
  }

  /** When the head of the queue may go: now or earlier if it may go at once. */
  #allowedAt(n: number, now: number): number {
    // The schedule no more than the burst ahead of the clock…
    const scheduled = this.#tat - this.#tau
    if (!this.#window) return scheduled
    // …and the last second with room for it (a piece larger than a whole second's budget goes into an empty one).
    const over = this.#window.sum(now) + n - this.#rate * 1000
    return over <= 0 || this.#window.sum(now) === 0 ? scheduled : Math.max(scheduled, this.#window.freedAt(over))
  }

  #drain(): void {
    const now = this.#clock.now()
    while (this.#queue.length) {
      const head = this.#queue[0]!
      const allowedAt = this.#allowedAt(head.n, now)
      if (allowedAt > now) {
        if (!this.#timer) {
          this.#timer = setTimeout(
            () => {
              this.#timer = undefined
              this.#drain()
            },
            Math.max(1, Math.ceil(allowedAt - now)),
          )
        }
        return
      }
      // Its bytes push the schedule on by n / rate.
      this.#tat = Math.max(this.#tat, now) + head.n / this.#rate
      this.#window?.add(now, head.n)
      this.passed += head.n
      this.#queue.shift()
      head.resolve()
    }
  }
}

/**
 * The piece a writer waits for when the budget has no headroom: keeps the
 * budget smooth (no 1-second window far above the cap).
 */
const SLICE = 4 * 1024

/**
 * A socket whose every written byte first passes its limiters. TLS is
 * layered on top of this stream (tls.connect({ socket })), so the limiter sees
 * the encrypted bytes, record overhead included.
 */
export class ThrottledSocket extends Duplex {
  readonly socket: Socket
  readonly #limiters: readonly ByteRateLimiter[]

  /** `limiters`: every budget a byte must pass, narrowest first (a per-address sub-limit, then the shared one). */
  constructor(socket: Socket, limiters: readonly ByteRateLimiter[]) {
    super()
    this.socket = socket
    this.#limiters = limiters
    socket.on('data', (d: Buffer) => {
      if (!this.push(d)) socket.pause()
    })
    socket.on('end', () => this.push(null))
    socket.on('error', (err) => this.destroy(err))
    socket.on('close', () => this.destroy())
  }

  override _read(): void {
    this.socket.resume()
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    void this.#send(chunk).then(() => cb(), cb)
  }

  /**
   * Each piece waits for the limiters, then goes to the socket; only a full
   * socket buffer (write() returning false) makes it wait for 'drain'. Waiting
   * for every piece's write callback instead cost an event-loop turn per 8 KB,
   * which under load made a 60 KB message take tens of milliseconds on loopback.
   *
   * A piece is as large as every limiter can grant at once (#35): with the
   * budget idle or lifted, that is the whole buffer in one write; a budget
   * that is spent lets a slice through as it refills. The schedule never runs
   * further ahead of the clock than the burst plus one slice, as before.
   */
  async #send(chunk: Buffer): Promise<void> {
    for (let i = 0; i < chunk.length;) {
      const room = Math.min(...this.#limiters.map((l) => l.headroom()))
      const size = Math.min(chunk.length - i, Math.max(SLICE, room))
      const piece = chunk.subarray(i, i + size)
      i += size
      for (const limiter of this.#limiters) await limiter.take(piece.length)
      if (this.socket.destroyed) throw halError('ESOCKET_CLOSED', 'socket closed')
      if (!this.socket.write(piece)) await this.#drained()
    }
  }

  #drained(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const drained = () => {
        this.socket.off('close', closed)
        resolve()
      }
      const closed = () => {
        this.socket.off('drain', drained)
        reject(new Error('socket closed'))
      }
      this.socket.once('drain', drained)
      this.socket.once('close', closed)
    })
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end(cb)
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy()
    cb(err)
  }
}
