import { setTimeout as sleep } from 'node:timers/promises'
import type { Clock } from '../../hal/clock.ts'
import { AddressSet } from '../../hal/net/cidr.ts'
import type { Config } from '../config/load.ts'
import { GatewayError } from '../errors.ts'
import { hashPassword, verifyPassword } from '../../hal/crypto/password.ts'

export interface Account {
  readonly name: string
  readonly passwordHash: string
  readonly allowFrom: AddressSet
}

/**
 * Counts failures per key (client address, account name) in a sliding window;
 * a key over the limit is blocked for a while. Memory is bounded: expired
 * entries are swept as new failures arrive.
 */
export class FailureLimiter {
  readonly #failures = new Map<string, number[]>()
  readonly #blockedUntil = new Map<string, number>()
  readonly #opts: { max: number; windowMs: number; blockMs: number }
  readonly #clock: Clock

  constructor(opts: { max: number; windowMs: number; blockMs: number }, clock: Clock) {
    this.#opts = opts
    this.#clock = clock
  }

  blocked(key: string): boolean {
    const until = this.#blockedUntil.get(key)
    if (until === undefined) return false
    if (this.#clock.now() < until) return true
    this.#blockedUntil.delete(key)
    return false
  }

  /** Records a failure; returns true when this failure tipped the key into a block. */
  fail(key: string, block = true): boolean {
    const now = this.#clock.now()
    const recent = (this.#failures.get(key) ?? []).filter((t) => now - t < this.#opts.windowMs)
    recent.push(now)
    if (block && recent.length >= this.#opts.max) {
      this.#failures.delete(key)
      this.#blockedUntil.set(key, now + this.#opts.blockMs)
      return true
    }
    this.#failures.set(key, recent)
    if (this.#failures.size > 10_000) this.#sweep(now)
    return false
  }

  succeed(key: string): void {
    this.#failures.delete(key)
  }

  /** Failures of `key` within the window (without recording one). */
  recent(key: string): number {
    const now = this.#clock.now()
    return (this.#failures.get(key) ?? []).filter((t) => now - t < this.#opts.windowMs).length
  }

  #sweep(now: number): void {
    for (const [k, times] of this.#failures) if (times.every((t) => now - t >= this.#opts.windowMs)) this.#failures.delete(k)
    for (const [k, until] of this.#blockedUntil) if (until <= now) this.#blockedUntil.delete(k)
  }
}

export type AuthOutcome =
  | { ok: true; account: Account }
  | { ok: false; error: GatewayError; reason: 'blocked' | 'busy' | 'unknown-account' | 'bad-password' | 'address-not-allowed'; blockedNow: boolean }

/** Longest the answer to a login for an account under attack is held back. */
export const MAX_ACCOUNT_DELAY_MS = 5000

/** At most this many password checks (scrypt) at once: they must not fill the thread pool that fsync and the HSM need. */
const SCRYPT_CONCURRENCY = 2
/** Password checks that may wait for a slot, from all addresses together; beyond, 454 at once (EAUTH_BUSY). */
export const AUTH_QUEUE_MAX = 64
/** An address that logged in to an account within this long is a known client of it. */
export const KNOWN_CLIENT_MS = 24 * 60 * 60 * 1000
const KNOWN_CLIENTS_MAX = 10_000

interface Waiting {
  ip: string
  /** Lower goes first: 0 a known client of the account, else 1 + the address's recent failures. */
  rank: number
  seq: number
  start: () => void
  refuse: () => void
}

/**
 * The password checks waiting for a scrypt slot (#29 finding 5), served
 * fairly: an address's checks wait behind each other, and addresses take
 * turns (the one served least recently first), so a flood from many
 * addresses costs the firm's host one turn, not the whole flood. Checks of a
 * known client of the account go first, then addresses with fewer recent
 * failures. The queue is bounded: when it is full a newcomer takes the place
 * of the worst-ranked waiting check (which is told 454 at once), or is told
 * 454 at once itself — nobody waits to be refused.
 */
class CheckQueue {
  #running = 0
  #seq = 0
  readonly #byAddress = new Map<string, Waiting[]>()
  /** When each address last got a slot (round robin). */
  readonly #served = new Map<string, number>()
  #size = 0

  /** Runs `fn` in a slot; 'busy' when there is no room to wait. */
  async run<T>(ip: string, rank: number, fn: () => Promise<T>): Promise<T | 'busy'> {
    if (this.#running >= SCRYPT_CONCURRENCY) {
      const admitted = await new Promise<boolean>((resolve) => {
        if (this.#size >= AUTH_QUEUE_MAX && !this.#dropWorseThan(rank)) return resolve(false)
        const w: Waiting = { ip, rank, seq: ++this.#seq, start: () => resolve(true), refuse: () => resolve(false) }
        const list = this.#byAddress.get(ip)
        if (list) list.push(w)
        else this.#byAddress.set(ip, [w])
        this.#size++
      })
      if (!admitted) return 'busy'
    } else this.#running++
    this.#served.set(ip, ++this.#seq)
    try {
      return await fn()
    } finally {
      const next = this.#next()
      if (next) next.start()
      else this.#running--
    }
  }

  /** Makes room by refusing the worst-ranked waiting check, if it ranks worse than `rank`. */
  #dropWorseThan(rank: number): boolean {
    let worst: Waiting | undefined
    for (const list of this.#byAddress.values())
      for (const w of list) if (!worst || w.rank > worst.rank || (w.rank === worst.rank && w.seq > worst.seq)) worst = w
    if (!worst || worst.rank <= rank) return false
    this.#remove(worst)
    worst.refuse()
    return true
  }

  /** The next check: the best rank of each address's first, then the address served least recently. */
  #next(): Waiting | undefined {
    let best: Waiting | undefined
    let bestServed = 0
    for (const [ip, list] of this.#byAddress) {
      const w = list[0]!
      const served = this.#served.get(ip) ?? 0
      if (!best || w.rank < best.rank || (w.rank === best.rank && served < bestServed)) {
        best = w
        bestServed = served
      }
    }
    if (best) this.#remove(best)
    if (this.#served.size > KNOWN_CLIENTS_MAX) for (const ip of this.#served.keys()) if (!this.#byAddress.has(ip)) this.#served.delete(ip)
    return best
  }

  #remove(w: Waiting): void {
    const list = this.#byAddress.get(w.ip)!
    list.splice(list.indexOf(w), 1)
    if (list.length === 0) this.#byAddress.delete(w.ip)
    this.#size--
  }
}

/**
 * Checks submission credentials (M1). Unknown names cost the same scrypt work
 * as known ones, so timing does not reveal which accounts exist.
 *
 * Failures block the client *address* for a while (454 4.7.0), never the
 * account: one misconfigured or compromised machine must not lock the firm's
 * statement run out from every other host. An account that keeps failing is
 * slowed instead — each further attempt for it, from an address that is not
 * a known client of it, waits a little longer before it is checked (up to
 * MAX_ACCOUNT_DELAY_MS), which makes guessing slow while the right password
 * from the firm's host still gets in at once. A known client is an address
 * that logged in to the account within KNOWN_CLIENT_MS (the "device cookie" of
 * OWASP's advice against lockout abuse): it is never slowed, and its checks
 * go first (CheckQueue).
 */
export class Authenticator {
  readonly #accounts: Map<string, Account>
  readonly #limiter: FailureLimiter
  readonly #decoy: Promise<string>
  readonly #max: number
  readonly #clock: Clock
  readonly #queue = new CheckQueue()
  /** `address|account` → when it last logged in. */
  readonly #known = new Map<string, number>()

  constructor(config: Config, clock: Clock) {
    this.#accounts = new Map()
    this.setAccounts(config.submission.accounts)
    const f = config.submission.authFailures
    this.#limiter = new FailureLimiter({ max: f.max, windowMs: f.windowSeconds * 1000, blockMs: f.blockSeconds * 1000 }, clock)
    this.#decoy = hashPassword('decoy-password-for-unknown-accounts')
    this.#max = f.max
    this.#clock = clock
  }

  /** S7: the accounts of an approved configuration change, in force for the next AUTH (sessions already in are not ended). */
  setAccounts(accounts: Config['submission']['accounts']): void {
    this.#accounts.clear()
    for (const a of accounts) this.#accounts.set(a.name, { name: a.name, passwordHash: a.passwordHash, allowFrom: new AddressSet(a.allowFrom) })
  }

  #isKnown(clientAddress: string, username: string): boolean {
    const at = this.#known.get(`${clientAddress}|${username}`)
    return at !== undefined && this.#clock.now() - at < KNOWN_CLIENT_MS
  }

  #remember(clientAddress: string, username: string): void {
    const now = this.#clock.now()
    if (this.#known.size >= KNOWN_CLIENTS_MAX) for (const [k, at] of this.#known) if (now - at >= KNOWN_CLIENT_MS) this.#known.delete(k)
    if (this.#known.size < KNOWN_CLIENTS_MAX) this.#known.set(`${clientAddress}|${username}`, now)
  }

  async check(username: string, password: string, clientAddress: string): Promise<AuthOutcome> {
    const ipKey = `ip:${clientAddress}`
    const userKey = `user:${username}`
    if (this.#limiter.blocked(ipKey)) {
      return { ok: false, error: new GatewayError('EAUTH_RATE_LIMITED'), reason: 'blocked', blockedNow: false }
    }
    const known = this.#isKnown(clientAddress, username)
    const over = known ? 0 : this.#limiter.recent(userKey) - this.#max + 1
    if (over > 0) await sleep(Math.min(MAX_ACCOUNT_DELAY_MS, 250 * 2 ** Math.min(over, 8)))
    const account = this.#accounts.get(username)
    const hash = account?.passwordHash ?? (await this.#decoy)
    const rank = known ? 0 : 1 + this.#limiter.recent(ipKey)
    const good = await this.#queue.run(clientAddress, rank, () => verifyPassword(password, hash))
    if (good === 'busy') return { ok: false, error: new GatewayError('EAUTH_BUSY'), reason: 'busy', blockedNow: false }
    if (account && good) {
      if (!account.allowFrom.empty && !account.allowFrom.has(clientAddress)) {
        // A right password from the wrong place is still a failure to count.
        const blockedNow = this.#limiter.fail(ipKey)
        return {
          ok: false,
          error: new GatewayError('ECLIENT_NOT_ALLOWED', `account ${username} may not log in from ${clientAddress}`),
          reason: 'address-not-allowed',
          blockedNow,
        }
      }
      this.#limiter.succeed(ipKey)
      this.#limiter.succeed(userKey)
      this.#remember(clientAddress, username)
      return { ok: true, account }
    }
    const blockedIp = this.#limiter.fail(ipKey)
    if (account) this.#limiter.fail(userKey, false)
    return {
      ok: false,
      error: new GatewayError('EAUTH_FAILED'),
      reason: account ? 'bad-password' : 'unknown-account',
      blockedNow: blockedIp,
    }
  }
}
