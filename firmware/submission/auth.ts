import type { Clock } from '../../hal/clock.ts'
import { AddressSet } from '../../hal/net/cidr.ts'
import type { Config } from '../config/load.ts'
import { GatewayError } from '../errors.ts'
import { hashPassword, verifyPassword } from './password.ts'

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
  fail(key: string): boolean {
    const now = this.#clock.now()
    const recent = (this.#failures.get(key) ?? []).filter((t) => now - t < this.#opts.windowMs)
    recent.push(now)
    if (recent.length >= this.#opts.max) {
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

  #sweep(now: number): void {
    for (const [k, times] of this.#failures) if (times.every((t) => now - t >= this.#opts.windowMs)) this.#failures.delete(k)
    for (const [k, until] of this.#blockedUntil) if (until <= now) this.#blockedUntil.delete(k)
  }
}

export type AuthOutcome =
  | { ok: true; account: Account }
  | { ok: false; error: GatewayError; reason: 'blocked' | 'unknown-account' | 'bad-password' | 'address-not-allowed'; blockedNow: boolean }

/**
 * Checks submission credentials (M1). Unknown names cost the same scrypt work
 * as known ones, so timing does not reveal which accounts exist.
 */
export class Authenticator {
  readonly #accounts: Map<string, Account>
  readonly #limiter: FailureLimiter
  readonly #decoy: Promise<string>

  constructor(config: Config, clock: Clock) {
    this.#accounts = new Map(
      config.submission.accounts.map((a) => [a.name, { name: a.name, passwordHash: a.passwordHash, allowFrom: new AddressSet(a.allowFrom) }]),
    )
    const f = config.submission.authFailures
    this.#limiter = new FailureLimiter({ max: f.max, windowMs: f.windowSeconds * 1000, blockMs: f.blockSeconds * 1000 }, clock)
    this.#decoy = hashPassword('decoy-password-for-unknown-accounts')
  }

  async check(username: string, password: string, clientAddress: string): Promise<AuthOutcome> {
    const ipKey = `ip:${clientAddress}`
    const userKey = `user:${username}`
    if (this.#limiter.blocked(ipKey) || this.#limiter.blocked(userKey)) {
      return { ok: false, error: new GatewayError('EAUTH_RATE_LIMITED'), reason: 'blocked', blockedNow: false }
    }
    const account = this.#accounts.get(username)
    const hash = account?.passwordHash ?? (await this.#decoy)
    const good = await verifyPassword(password, hash)
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
    const blockedUser = account ? this.#limiter.fail(userKey) : false
    return {
      ok: false,
      error: new GatewayError('EAUTH_FAILED'),
      reason: account ? 'bad-password' : 'unknown-account',
      blockedNow: blockedIp || blockedUser,
    }
  }
}
