import type { Clock } from '../../hal/clock.ts'
import { applyTbf } from '../../hal/net/tc.ts'
import { ByteRateLimiter } from '../../hal/net/throttle.ts'
import type { Config } from '../config/load.ts'
import type { Logger } from '../log.ts'

export interface Egress {
  address: string
  ehloName: string
  weight: number
  /** Sub-limit for this address within the shared budget; 0 or absent: none. */
  bitsPerSecond?: number
}

/** Replies that mean "this sending address is blocked here", not "this recipient is refused". */
const BLOCK_REPLY =
  /\b(block(ed|list)?|blacklist(ed)?|deny ?list(ed)?|listed (at|on|in)|spamhaus|spamcop|barracuda|\brbl\b|dnsbl|poor reputation|ip reputation)\b/i

export function isBlockReply(text: string): boolean {
  return BLOCK_REPLY.test(text)
}

/**
 * Replies by which a destination asks this sending address to slow down: 421
 * (service busy, RFC 5321 §3.8) or a 4xx naming a rate or connection limit
 * (e.g. Gmail's 4.7.28). Greylisting is not throttling: it concerns one mail
 * and is answered by retrying that mail.
 */
const THROTTLE_REPLY =
  /\b(too many (connections|messages|recipients|concurrent)|rate[- ]limit(ed|ing)?|throttl(ed|ing)|slow down|exceeded|unusual rate)\b|\b4\.7\.28\b/i

export function isThrottleReply(reply: { code: number; text: string }): boolean {
  if (reply.code < 400 || reply.code >= 500 || /gr[ae]ylist/i.test(reply.text)) return false
  return reply.code === 421 || THROTTLE_REPLY.test(reply.text)
}

/**
 * The egress address pool (M2): addresses are used in proportion to their
 * weights; an address a destination blocks is paused for that destination
 * only, while the others carry on (per source-IP/destination state, as
 * KumoMTA and ZoneMTA keep it).
 */
/**
 * The kernel's token bucket (tc-tbf) at the bandwidth budget on each of `tcDevices`, at start (needs
 * CAP_NET_ADMIN). A failure is logged: the box's own limiter still holds the budget; this is a second line.
 */
export async function installKernelShaping(d: Config['delivery'], log: Logger): Promise<void> {
  for (const device of d.tcDevices) {
    try {
      await applyTbf(device, d.bandwidthBitsPerSecond)
      log.info({ device, bitsPerSecond: d.bandwidthBitsPerSecond }, 'kernel shaping (tc-tbf) installed on the egress NIC')
    } catch (err) {
      log.error({ device, err: (err as Error).message }, 'cannot install kernel shaping (tc); is CAP_NET_ADMIN granted?')
    }
  }
}

export class EgressPool {
  #list: Egress[] = []
  readonly #clock: Clock
  #pauseMs = 0
  readonly #paused = new Map<string, number>()
  #cursor = 0
  #order: Egress[] = []
  /** Per-address sub-limits within the shared budget (M3), for addresses that have one. */
  readonly #limiters = new Map<string, ByteRateLimiter>()
  /** What each address sent (S11): a budget no writer ever waits for, only a count. */
  readonly #counters = new Map<string, ByteRateLimiter>()

  constructor(config: Config, clock: Clock) {
    this.#clock = clock
    this.reconfigure(config)
  }

  /**
   * S7: addresses, weights and sub-limits approved on the admin page, in force for
   * the next pick. Pauses and byte counts of addresses still listed are kept.
   */
  reconfigure(config: Config): void {
    this.#list = config.delivery.egress.map((e) => ({ ...e }))
    this.#pauseMs = config.delivery.blockPauseSeconds * 1000
    // Weighted round-robin: each address appears `weight` times, interleaved.
    const max = Math.max(...this.#list.map((e) => e.weight))
    this.#order = []
    for (let round = 0; round < max; round++) for (const e of this.#list) if (e.weight > round) this.#order.push(e)
    for (const e of this.#list) {
      const rate = (e.bitsPerSecond ?? 0) / 8
      const own = this.#limiters.get(e.address)
      if (!rate) this.#limiters.delete(e.address)
      else if (own) own.setRate(rate, 0)
      else this.#limiters.set(e.address, ByteRateLimiter.egressBudget(rate, 0))
    }
    for (const address of this.#limiters.keys()) if (!this.#list.some((e) => e.address === address)) this.#limiters.delete(address)
  }

  /** The address's byte counter and its own sub-limit if it has one (the shared budget is the caller's). */
  limitersFor(egress: Egress): ByteRateLimiter[] {
    let counter = this.#counters.get(egress.address)
    if (!counter)
      this.#counters.set(egress.address, (counter = new ByteRateLimiter({ bytesPerSecond: 2 ** 50, burstBytes: 2 ** 50, clock: { now: () => Date.now() } })))
    const own = this.#limiters.get(egress.address)
    return own ? [counter, own] : [counter]
  }

  /** Bytes sent from each egress address since start. */
  bytesSent(): Record<string, number> {
    return Object.fromEntries([...this.#counters].map(([address, c]) => [address, c.passed]))
  }

  get all(): readonly Egress[] {
    return this.#list
  }

  /** The next address usable for `destination`, skipping `exclude`; undefined when all are paused or excluded. */
  pick(destination: string, exclude: ReadonlySet<string> = new Set()): Egress | undefined {
    const now = this.#clock.now()
    for (let i = 0; i < this.#order.length; i++) {
      const e = this.#order[this.#cursor++ % this.#order.length]!
      if (exclude.has(e.address)) continue
      const until = this.#paused.get(`${e.address}|${destination}`)
      if (until !== undefined && until > now) continue
      return e
    }
    return undefined
  }

  /** Keeps `address` away from `destination` for `ms` (default: the block pause). */
  pause(address: string, destination: string, ms = this.#pauseMs): void {
    const until = this.#clock.now() + ms
    const key = `${address}|${destination}`
    // A shorter pause never cuts a longer one short (a block outlasts a later throttle).
    if ((this.#paused.get(key) ?? 0) < until) this.#paused.set(key, until)
  }

  /** Every pause in force: which address rests at which destination, until when. */
  paused(): { address: string; destination: string; until: number }[] {
    const now = this.#clock.now()
    return [...this.#paused]
      .filter(([, until]) => until > now)
      .map(([key, until]) => {
        const [address = '', destination = ''] = key.split('|')
        return { address, destination, until }
      })
  }

  pausedFor(destination: string): string[] {
    const now = this.#clock.now()
    return this.#list.filter((e) => (this.#paused.get(`${e.address}|${destination}`) ?? 0) > now).map((e) => e.address)
  }
}
