import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import type { Clock } from '../../hal/clock.ts'
import { verifyPassword } from '../../hal/crypto/password.ts'
import type { Hsm } from '../../hal/hsm/index.ts'
import { writeFileAtomic } from '../../hal/storage/files.ts'
import type { EventSink } from '../events.ts'
import { AccountChanges } from './account-changes.ts'
import { AccountError, CODE_VALID_MS, causeText, oneTimeCode, safeEqual, sha256 } from './account-records.ts'
import { MAX_FAILURES, viewOf, type LoginResult, type StoredUser, type UserView } from './account-types.ts'
import { passwordProblem } from './passwords.ts'
import { otpauthUri, verifyTotp } from './totp.ts'

/**
 * The admin page's accounts (S3, S4, S5, S8), kept in `<dataDir>/admin/users.json`
 * (mode 0600, written whole). Nothing in that file lets a thief log in or
 * guess offline: a password is hashed with scrypt over an HMAC of it computed
 * in the HSM (`admin/password-pepper`, which never leaves the token), the TOTP
 * secret is sealed with AES-256-GCM under a key derived there, and recovery
 * codes are kept as HMACs under another. Without the HSM the file is inert.
 *
 * The first administrator is made with a one-time setup code (S8, ETSI EN 303
 * 645 5.1: no default password): while no administrator exists the box makes
 * one, valid 24 hours and once, prints it and writes it to a 0600 file.
 */
const RECOVERY_CODES = 10
/** The name authenticator apps list the account under. */
const ISSUER = 'Statement Gateway'

export { MAX_FAILURES, PASSWORD_MAX_AGE_MS, ROLES, type ChangeMeta, type LoginResult, type Role, type UserView } from './account-types.ts'
export { AccountError, causeText, isLowering } from './account-records.ts'

export class Accounts extends AccountChanges {
  readonly #codeFile: string
  readonly #dormant: { days: number; disable: boolean } | undefined

  /** `dormant`: S5's periodic review; with `disable`, an account unused that many days is disabled at its next login attempt. */
  constructor(o: { dataDir: string; hsm: Hsm; clock: Clock; events: EventSink; dormant?: { days: number; disable: boolean } }) {
    super(o)
    this.#dormant = o.dormant
    this.#codeFile = join(o.dataDir, 'admin', 'setup-code')
  }

  /** Where the pending setup code is written for the person at the console. */
  get setupCodeFile(): string {
    return this.#codeFile
  }

  hasAdmin(): boolean {
    return this.store.users.some((u) => u.role === 'admin' && !u.disabled)
  }

  /**
   * While no administrator exists: a new setup code when none is pending or
   * the pending one has expired (returned, and written to a 0600 file), else
   * undefined (the pending code stays as printed before).
   */
  ensureSetupCode(): string | undefined {
    if (this.hasAdmin()) return undefined
    const s = this.store.setup
    if (s && s.expiresAt > this.clock.now() && existsSync(this.#codeFile)) return undefined
    const code = oneTimeCode()
    this.store.setup = { hash: sha256(code), expiresAt: this.clock.now() + CODE_VALID_MS }
    this.save()
    writeFileAtomic(this.#codeFile, `${code}\n`, 0o600)
    return code
  }

  /** The pending setup code as written for the console, while it is valid and no administrator exists. */
  pendingSetupCode(): string | undefined {
    const s = this.store.setup
    if (!s || this.hasAdmin() || s.expiresAt <= this.clock.now() || !existsSync(this.#codeFile)) return undefined
    return readFileSync(this.#codeFile, 'utf8').trim()
  }

  /** Whether `code` is the pending setup code (still valid); it is used up by createFirstAdmin. */
  checkSetupCode(code: string): boolean {
    const s = this.store.setup
    if (!s || this.hasAdmin() || s.expiresAt <= this.clock.now()) return false
    return safeEqual(sha256(code.trim().toUpperCase()), s.hash)
  }

  /**
   * The first administrator, made with the setup code, which is then used up
   * (a second use fails). Returns the TOTP secret to enrol: the account cannot
   * log in until a code from it is confirmed (confirmTotp).
   */
  async createFirstAdmin(setupCode: string, name: string, password: string, clientAddress: string): Promise<Buffer> {
    if (!this.checkSetupCode(setupCode)) {
      this.events.emit({ type: 'admin.action', who: name, via: 'admin-page', action: 'setup', target: undefined, outcome: 'refused', reason: 'setup code' })
      throw new AccountError('The setup code is wrong, used or expired.')
    }
    const secret = await this.create(name, 'admin', password, 'setup code')
    this.store.setup = null
    this.save()
    rmSync(this.#codeFile, { force: true })
    this.events.emit({
      type: 'admin.action',
      who: name,
      via: 'admin-page',
      action: 'setup',
      target: name,
      outcome: 'ok',
      detail: `first administrator, from ${clientAddress}`,
    })
    return secret
  }

  /** The otpauth URI of an account still to enrol its MFA (shown as a QR code), else undefined. */
  async enrolmentUri(name: string): Promise<string | undefined> {
    const u = this.find(name)
    if (!u || u.totpStep >= 0) return undefined
    return otpauthUri(await this.crypto.unseal(u.totp, name), name, ISSUER)
  }

  /**
   * Enrolment: the first code from the person's app proves they have the
   * secret; recovery codes are made then and shown once.
   */
  async confirmTotp(name: string, code: string): Promise<string[] | undefined> {
    const u = this.find(name)
    if (!u || u.recovery.length > 0 || u.totpStep >= 0) return undefined
    const step = verifyTotp(await this.crypto.unseal(u.totp, name), code, this.clock.now(), u.totpStep)
    if (step === undefined) return undefined
    const codes = Array.from({ length: RECOVERY_CODES }, () =>
      randomBytes(8)
        .toString('hex')
        .replace(/(.{4})(?=.)/g, '$1-'),
    )
    u.totpStep = step
    u.recovery = await Promise.all(codes.map((c) => this.crypto.recoveryMac(c)))
    this.save()
    this.events.emit({ type: 'admin.action', who: name, via: 'admin-page', action: 'mfa.enrol', target: name, outcome: 'ok' })
    return codes
  }

  /**
   * S3, S4: password and then a TOTP code (or a recovery code, used up). Every
   * refusal counts towards the lockout; a success resets the count. Every
   * attempt is an audit event (S6).
   */
  /** S4: an account unused past `admin.dormantDays` is disabled at its next login, when the box is set to. */
  #disableIfDormant(u: StoredUser): void {
    const d = this.#dormant
    if (!d?.disable || u.disabled || this.clock.now() - (u.lastLoginAt ?? u.createdAt) <= d.days * 86_400_000) return
    u.disabled = true
    this.save()
    this.events.emit({
      type: 'admin.action',
      who: 'box',
      via: 'admin-page',
      action: 'user.disable',
      target: u.name,
      outcome: 'ok',
      reason: `unused for over ${d.days} days`,
    })
  }

  async login(name: string, password: string, code: string, clientAddress: string): Promise<LoginResult> {
    const u = this.find(name)
    const refuse = (reason: Exclude<LoginResult, { ok: true }>['reason']): LoginResult => {
      let lockedNow = false
      // A right password on an account still to enrol its MFA is not a failure: the page goes on to enrolment.
      if (u && reason !== 'locked' && reason !== 'disabled' && reason !== 'not-enrolled') {
        u.failures++
        // #31: from where: the lock's cause, shown with the alarm and in the failed-login review.
        u.failedFrom = { ...u.failedFrom, [clientAddress]: (u.failedFrom?.[clientAddress] ?? 0) + 1 }
        if (u.failures >= MAX_FAILURES && u.lockedAt === null) {
          u.lockedAt = this.clock.now()
          u.lockCause = u.failedFrom
          lockedNow = true
        }
        this.save()
      }
      // A right password on an account still to enrol is the start of its enrolment, not a failed login.
      if (reason === 'not-enrolled')
        this.events.emit({ type: 'admin.action', who: name, via: 'admin-page', action: 'mfa.enrol-start', target: name, outcome: 'ok' })
      else this.events.emit({ type: 'admin.login', user: name, clientAddress, outcome: 'failure', reason })
      if (lockedNow)
        this.events.emit({
          type: 'admin.action',
          who: name,
          via: 'admin-page',
          action: 'user.lock',
          target: name,
          outcome: 'ok',
          reason: `${MAX_FAILURES} failed logins`,
          detail: `from ${causeText(u!.lockCause)}`,
        })
      return { ok: false, reason, lockedNow }
    }
    if (!u) {
      await this.crypto.decoyCheck(password)
      return refuse('unknown-user')
    }
    const passwordOk = await verifyPassword(await this.crypto.pepper(password), u.password)
    this.#disableIfDormant(u)
    if (u.disabled) return refuse('disabled')
    if (u.lockedAt !== null) return refuse('locked')
    if (!passwordOk) return refuse('bad-password')
    if (u.totpStep < 0) return refuse('not-enrolled')
    const trimmed = code.trim()
    const step = verifyTotp(await this.crypto.unseal(u.totp, name), trimmed, this.clock.now(), u.totpStep)
    if (step !== undefined) u.totpStep = step
    else {
      const mac = await this.crypto.recoveryMac(trimmed.toLowerCase())
      const at = u.recovery.findIndex((r) => safeEqual(r, mac))
      if (at < 0) return refuse('bad-code')
      u.recovery.splice(at, 1)
      this.events.emit({
        type: 'admin.action',
        who: name,
        via: 'admin-page',
        action: 'mfa.recovery-code',
        target: name,
        outcome: 'ok',
        detail: `${u.recovery.length} left`,
      })
    }
    u.failures = 0
    u.failedFrom = {}
    u.lastLoginAt = this.clock.now()
    this.save()
    this.events.emit({ type: 'admin.login', user: name, clientAddress, outcome: 'success' })
    return { ok: true, user: viewOf(u, this.clock.now()) }
  }

  /**
   * S4: the second factor asked again at a moment that matters (approving a
   * configuration change): a TOTP code not used before, recorded; a wrong one
   * counts towards the lockout like a failed login.
   */
  async verifyCode(name: string, code: string): Promise<boolean> {
    const u = this.find(name)
    if (!u || u.disabled || u.lockedAt !== null || u.totpStep < 0) return false
    const step = verifyTotp(await this.crypto.unseal(u.totp, name), code.trim(), this.clock.now(), u.totpStep)
    if (step === undefined) {
      u.failures++
      if (u.failures >= MAX_FAILURES) u.lockedAt = this.clock.now()
      this.save()
      this.events.emit({ type: 'admin.action', who: name, via: 'admin-page', action: 'mfa.verify', target: name, outcome: 'refused', reason: 'wrong code' })
      return false
    }
    u.totpStep = step
    this.save()
    return true
  }

  async changePassword(name: string, current: string, next: string): Promise<void> {
    const u = this.mustFind(name)
    if (!(await verifyPassword(await this.crypto.pepper(current), u.password))) throw new AccountError('The current password is not right.')
    const problem = passwordProblem(next, name)
    if (problem) throw new AccountError(`The new password ${problem}.`)
    if (await verifyPassword(await this.crypto.pepper(next), u.password)) throw new AccountError('The new password must differ from the current one.')
    u.password = await this.crypto.hash(next)
    u.passwordChangedAt = this.clock.now()
    this.save()
    this.events.emit({ type: 'admin.action', who: name, via: 'admin-page', action: 'password.change', target: name, outcome: 'ok' })
  }

  /** A person moves to a new authenticator (a new phone): their password again, then enrolment as at the first login. */
  async resetOwnMfa(name: string, password: string): Promise<void> {
    const u = this.mustFind(name)
    if (!(await verifyPassword(await this.crypto.pepper(password), u.password))) throw new AccountError('The password is not right.')
    await this.resetMfaSecret(u, name, 'own request: a new authenticator')
  }

  user(name: string): UserView | undefined {
    const u = this.find(name)
    return u && viewOf(u, this.clock.now())
  }

  users(): UserView[] {
    return this.store.users.map((u) => viewOf(u, this.clock.now()))
  }
}
