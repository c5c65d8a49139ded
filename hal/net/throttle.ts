import { Duplex } from 'node:stream'
import type { Socket } from 'node:net'
import type { Clock } from '../clock.ts'
import { halError } from '../errors.ts'

/**
 * A byte budget shared by every outbound socket (M3), as GCRA (virtual
 * scheduling, the token bucket's exact equivalent): each grant of n bytes moves
 * the theoretical arrival time on by n / rate, and a grant may run ahead of
 * the clock by at most the burst. Late timers therefore cost no capacity
 * while writers are waiting, and no 1-second window exceeds the budget by more
 * than the burst. Writers are served in order.
 */
export class ByteRateLimiter {
  #rate: number
  #tau: number
  readonly #clock: Clock
  #tat: number
  #queue: { n: number; resolve: () => void }[] = []
  #timer: NodeJS.Timeout | undefined
  /** Bytes let through since creation (for metrics and benchmarks). */
  passed = 0

  /**
   * `burstBytes` 0 chooses 0.5 % of a second's budget (at least 4 KiB): the
   * budget may then be exceeded in any 1-second window by at most about 0.5 %
   * plus one slice (#35: with 1 % and 8 KB slices a receiver saw 100.6 % of a
   * 10 Mbit/s budget in its busiest second; with these, 100.2–100.3 %).
   */
  constructor(opts: { bytesPerSecond: number; burstBytes: number; clock: Clock }) {
    this.#rate = opts.bytesPerSecond / 1000 // bytes per ms
    const burst = opts.burstBytes || Math.max(4096, Math.floor(opts.bytesPerSecond / 200))
    this.#tau = burst / this.#rate
    this.#clock = opts.clock
    this.#tat = opts.clock.now()
  }

  /** A new budget from now on (S7: a bandwidth change approved on the admin page); grants already scheduled keep theirs. */
  setRate(bytesPerSecond: number, burstBytes: number): void {
    this.#rate = bytesPerSecond / 1000
    const burst = burstBytes || Math.max(4096, Math.floor(bytesPerSecond / 200))
    this.#tau = burst / this.#rate
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
   * schedule past the burst: 0 while others wait (they go first), the whole
   * burst when the budget has been idle (#35: writes sized to the grant).
   */
  headroom(): number {
    if (this.#queue.length) return 0
    const now = this.#clock.now()
    return Math.max(0, Math.floor((now + this.#tau - Math.max(this.#tat, now)) * this.#rate))
  }

  /** Resolves when `n` bytes may be written. */
  take(n: number): Promise<void> {
    return new Promise((resolve) => {
      this.#queue.push({ n, resolve })
      this.#drain()
    })
  }

  #drain(): void {
    const now = this.#clock.now()
    while (this.#queue.length) {
      const head = this.#queue[0]!
      // A writer may go once the schedule is no more than the burst ahead of
      // the clock; its bytes then push the schedule on by n / rate.
      const allowedAt = this.#tat - this.#tau
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
      this.#tat = Math.max(this.#tat, now) + head.n / this.#rate
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
