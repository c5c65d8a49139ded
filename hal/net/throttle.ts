import { Duplex } from 'node:stream'
import type { Socket } from 'node:net'
import type { Clock } from '../clock.ts'

/**
 * A byte budget shared by every outbound socket (M3): a token bucket filled at
 * `bytesPerSecond`, holding at most `burstBytes`. Writers wait in order, so
 * one large message cannot starve the others for long.
 */
export class ByteRateLimiter {
  #rate: number
  readonly #burst: number
  readonly #clock: Clock
  #tokens: number
  #last: number
  #queue: { n: number; resolve: () => void }[] = []
  #timer: NodeJS.Timeout | undefined
  /** Bytes let through since creation (for metrics and benchmarks). */
  passed = 0

  constructor(opts: { bytesPerSecond: number; burstBytes: number; clock: Clock }) {
    this.#rate = opts.bytesPerSecond
    this.#burst = opts.burstBytes
    this.#clock = opts.clock
    this.#tokens = opts.burstBytes
    this.#last = opts.clock.now()
  }

  get bytesPerSecond(): number {
    return this.#rate
  }

  /** Resolves when `n` bytes may be written. Chunks larger than the burst are let through in burst-sized debts. */
  take(n: number): Promise<void> {
    return new Promise((resolve) => {
      this.#queue.push({ n, resolve })
      this.#drain()
    })
  }

  #refill(): void {
    const now = this.#clock.now()
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) / 1000) * this.#rate)
    this.#last = now
  }

  #drain(): void {
    this.#refill()
    while (this.#queue.length) {
      const head = this.#queue[0]!
      const need = Math.min(head.n, this.#burst)
      if (this.#tokens < need) break
      this.#tokens -= head.n // may go negative for chunks above the burst: the debt delays the next writer
      this.passed += head.n
      this.#queue.shift()
      head.resolve()
    }
    if (this.#queue.length && !this.#timer) {
      const need = Math.min(this.#queue[0]!.n, this.#burst) - this.#tokens
      const wait = Math.max(1, Math.ceil((need / this.#rate) * 1000))
      this.#timer = setTimeout(() => {
        this.#timer = undefined
        this.#drain()
      }, wait)
    }
  }
}

/** Largest piece written at once: keeps the budget smooth (no 1-second window far above the cap). */
const SLICE = 16 * 1024

/**
 * A socket whose every written byte first passes the shared limiter. TLS is
 * layered on top of this stream (tls.connect({ socket })), so the limiter sees
 * the encrypted bytes, record overhead included.
 */
export class ThrottledSocket extends Duplex {
  readonly socket: Socket
  readonly #limiter: ByteRateLimiter | undefined

  constructor(socket: Socket, limiter: ByteRateLimiter | undefined) {
    super()
    this.socket = socket
    this.#limiter = limiter
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

  async #send(chunk: Buffer): Promise<void> {
    for (let i = 0; i < chunk.length; i += SLICE) {
      const piece = chunk.subarray(i, i + SLICE)
      if (this.#limiter) await this.#limiter.take(piece.length)
      if (this.socket.destroyed) throw new Error('socket closed')
      await new Promise<void>((resolve, reject) => this.socket.write(piece, (err) => (err ? reject(err) : resolve())))
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end(cb)
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy()
    cb(err)
  }
}
