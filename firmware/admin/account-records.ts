import { createHash, randomInt, timingSafeEqual } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Clock } from '../../hal/clock.ts'
import type { Hsm } from '../../hal/hsm/index.ts'
import { writeFileAtomic } from '../../hal/storage/files.ts'
import type { EventSink } from '../events.ts'
import { createError } from '../box-errors.ts'
import { AccountCrypto } from './account-crypto.ts'
import type { AccountChange, ChangeMeta, Role, Store, StoredUser } from './account-types.ts'
import { newTotpSecret } from './totp.ts'

export class AccountError extends createError('EACCOUNT_REFUSED', 'AccountError') {}

/** How long a setup or enrolment code is valid. */
export const CODE_VALID_MS = 24 * 3_600_000
/** Changes kept per account: enough for any proposal's lifetime. */
const MAX_CHANGES_KEPT = 50

/**
 * The admin page's accounts as stored (S3, S4, S5): `<dataDir>/admin/users.json`
 * (mode 0600, written whole), and what every change to an account does the
 * same way — a one-time code, a record of who changed the account, an audit
 * event naming who proposed and who approved (S6, #31). accounts.ts and
 * account-changes.ts build on it.
 */
export class AccountRecords {
  protected readonly file: string
  protected readonly crypto: AccountCrypto
  protected readonly clock: Clock
  protected readonly events: EventSink
  protected store: Store

  constructor(o: { dataDir: string; hsm: Hsm; clock: Clock; events: EventSink }) {
    this.file = join(o.dataDir, 'admin', 'users.json')
    this.crypto = new AccountCrypto(o.hsm)
    this.clock = o.clock
    this.events = o.events
    this.store = existsSync(this.file) ? (JSON.parse(readFileSync(this.file, 'utf8')) as Store) : { version: 1, users: [], setup: null }
  }

  protected find(name: string): StoredUser | undefined {
    return this.store.users.find((u) => u.name === name)
  }

  protected mustFind(name: string): StoredUser {
    const u = this.find(name)
    if (!u) throw new AccountError(`No account named ${name}.`)
    return u
  }

  /** A one-time enrolment code for `u` (a day, once); its hash kept. */
  protected enrolmentCode(u: StoredUser): string {
    const code = oneTimeCode()
    u.enrolment = { hash: sha256(code), expiresAt: this.clock.now() + CODE_VALID_MS }
    return code
  }

  protected changed(u: StoredUser, change: AccountChange['change'], meta: ChangeMeta): void {
    u.changes = [...(u.changes ?? []), { at: this.clock.now(), change, ...meta }].slice(-MAX_CHANGES_KEPT)
  }

  /** S6, #31: the trail records who proposed and who approved every change to an account. */
  protected action(meta: ChangeMeta, action: string, target: string, detail?: string, reason?: string): void {
    const who = meta.approver || meta.proposer
    const how = meta.approver ? `proposed by ${meta.proposer}, approved by ${meta.approver}` : `by ${meta.proposer}, ${meta.via}`
    this.events.emit({
      type: 'admin.action',
      who,
      via: meta.via === 'console' ? 'cli' : 'admin-page',
      action,
      target,
      outcome: 'ok',
      ...(reason ? { reason } : {}),
      detail: detail ? `${detail}; ${how}` : how,
    })
  }

  protected requireAdmin(by: string): void {
    const u = this.find(by)
    if (!u || u.role !== 'admin' || u.disabled || u.lockedAt !== null) throw new AccountError('Only an administrator may do that.')
  }

  protected save(): void {
    writeFileAtomic(this.file, `${JSON.stringify(this.store, null, 1)}\n`, 0o600)
  }

  protected async resetMfaSecret(u: StoredUser, by: string, reason: string): Promise<Buffer> {
    const name = u.name
    const secret = newTotpSecret()
    u.totp = await this.crypto.seal(secret, name)
    u.totpStep = -1
    u.recovery = []
    this.save()
    this.events.emit({ type: 'admin.action', who: by, via: 'admin-page', action: 'mfa.reset', target: name, outcome: 'ok', reason })
    return secret
  }
}

export const sha256 = (s: string) => createHash('sha256').update(s).digest('base64')

/** 4 groups of 5 from an alphabet without look-alikes (~99 bits), typed from a console or a slip of paper. */
export function oneTimeCode(): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789'
  return Array.from({ length: 4 }, () => Array.from({ length: 5 }, () => alphabet[randomInt(alphabet.length)]).join('')).join('-')
}

export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

/** Taking the administrator role away: the safe direction. */
export function isLowering(from: Role, to: Role): boolean {
  return from === 'admin' && to !== 'admin'
}

/** `127.0.0.44 ×5, 10.0.0.7 ×1`: where the failed logins came from. */
export function causeText(cause: Record<string, number> | null | undefined): string {
  return Object.entries(cause ?? {})
    .sort((a, b) => b[1] - a[1])
    .map(([ip, n]) => `${ip || 'unknown'} ×${n}`)
    .join(', ')
}
