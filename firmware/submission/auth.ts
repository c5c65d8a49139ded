import type { Clock } from '../../hal/clock.ts'
import { AddressSet } from '../../hal/net/cidr.ts'
import type { Config } from '../config/load.ts'
import { GatewayError } from '../errors.ts'
import { setTimeout as sleep } from 'node:timers/promises'
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
  | { ok: false; error: GatewayError; reason: 'blocked' | 'unknown-account' | 'bad-password' | 'address-not-allowed'; blockedNow: boolean }

/** Longest the answer to a login for an account under attack is held back. */
export const MAX_ACCOUNT_DELAY_MS = 5000

/** At most this many password checks (scrypt) at once: they must not fill the thread pool that fsync and the HSM need. */
const SCRYPT_CONCURRENCY = 2

/**
 * Checks submission credentials (M1). Unknown names cost the same scrypt work
 * as known ones, so timing does not reveal which accounts exist.
 *
 * Failures block the client *address* for a while (454 4.7.0), never the
 * account: one misconfigured or compromised machine must not lock the firm's
 * statement run out from every other host. An account that keeps failing is
 * slowed instead — each further attempt for it, from anywhere, waits a little
 * longer before it is answered (up to MAX_ACCOUNT_DELAY_MS), which makes
 * guessing slow while the right password from the right host still gets in.
 */
export class Authenticator {
  readonly #accounts: Map<string, Account>
  readonly #limiter: FailureLimiter
  readonly #decoy: Promise<string>
  readonly #max: number
  #running = 0
  readonly #waiting: (() => void)[] = []

  constructor(config: Config, clock: Clock) {
    this.#accounts = new Map()
    this.setAccounts(config.submission.accounts)
    const f = config.submission.authFailures
    this.#limiter = new FailureLimiter({ max: f.max, windowMs: f.windowSeconds * 1000, blockMs: f.blockSeconds * 1000 }, clock)
    this.#decoy = hashPassword('decoy-password-for-unknown-accounts')
    this.#max = f.max
  }

  /** S7: the accounts of an approved configuration change, in force for the next AUTH (sessions already in are not ended). */
  setAccounts(accounts: Config['submission']['accounts']): void {
    this.#accounts.clear()
    for (const a of accounts) this.#accounts.set(a.name, { name: a.name, passwordHash: a.passwordHash, allowFrom: new AddressSet(a.allowFrom) })
  }

  /** Runs a password check when fewer than SCRYPT_CONCURRENCY are running. */
  async #scrypt<T>(fn: () => Promise<T>): Promise<T> {
    // A finished check hands its slot straight to the next waiter.
    if (this.#running >= SCRYPT_CONCURRENCY) await new Promise<void>((r) => this.#waiting.push(r))
    else this.#running++
    try {
      return await fn()
    } finally {
      const next = this.#waiting.shift()
      if (next) next()
      else this.#running--
    }
  }

  async check(username: string, password: string, clientAddress: string): Promise<AuthOutcome> {
    const ipKey = `ip:${clientAddress}`
    const userKey = `user:${username}`
    if (this.#limiter.blocked(ipKey)) {
      return { ok: false, error: new GatewayError('EAUTH_RATE_LIMITED'), reason: 'blocked', blockedNow: false }
    }
    const over = this.#limiter.recent(userKey) - this.#max + 1
    if (over > 0) await sleep(Math.min(MAX_ACCOUNT_DELAY_MS, 250 * 2 ** Math.min(over, 8)))
    const account = this.#accounts.get(username)
    const hash = account?.passwordHash ?? (await this.#decoy)
    const good = await this.#scrypt(() => verifyPassword(password, hash))
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
