import { newTotpSecret, verifyTotp } from './totp.ts'
import { passwordProblem } from './passwords.ts'
import { AccountError, AccountRecords, isLowering, safeEqual, sha256 } from './account-records.ts'
import { ROLES, type AccountChange, type ChangeMeta, type Role } from './account-types.ts'

const NAME = /^[a-z][a-z0-9._-]{1,31}$/
const CHANGE_WORDS: Record<AccountChange['change'], string> = {
  created: 'made',
  enabled: 'enabled again',
  unlocked: 'unlocked',
  role: 'given another role',
  'mfa-reset': 'given a new authenticator',
  'password-reset': 'given a new password',
}

/**
 * Changes to the admin page's accounts (S5, #31: four eyes means two people).
 * What makes or strengthens an account — making one, re-enabling, unlocking,
 * giving it a role, resetting its MFA or password — is applied here only on a
 * second administrator's approval (account-proposals.ts) or at the box's
 * console; the safe direction (disabling, taking the administrator role away)
 * is one administrator's, at once. Each change is kept on the account, so an
 * account its proposer made or changed does not approve their changes
 * (`mintedBy`), and recorded with who proposed and who approved.
 */
export class AccountChanges extends AccountRecords {
  /**
   * S5, #31: an account approved by a second administrator (account-proposals.ts), or enrolled at
   * the console. It has no password yet: the one-time enrolment code returned (shown once, to the
   * approver or at the console) lets the person set their own and enrol their own authenticator
   * (`welcome`), so nobody who made the account ever knows its secrets.
   */
  async createPending(name: string, role: Role, meta: ChangeMeta): Promise<string> {
    await this.create(name, role, undefined, meta.proposer)
    const u = this.mustFind(name)
    const code = this.enrolmentCode(u)
    this.changed(u, 'created', meta)
    this.save()
    this.action(meta, 'user.create', name, `role ${role}`)
    return code
  }

  /** Whether `name` could be made an account (a proposal checks it before anyone approves). */
  checkNewName(name: string, role: Role): void {
    if (!NAME.test(name)) throw new AccountError('A name is 2 to 32 lower-case letters, digits, dots, dashes or underscores, starting with a letter.')
    if (this.find(name)) throw new AccountError(`There is already an account named ${name}.`)
    if (!ROLES.includes(role)) throw new AccountError(`No such role: ${role}.`)
  }

  protected async create(name: string, role: Role, password: string | undefined, createdBy: string): Promise<Buffer> {
    this.checkNewName(name, role)
    const problem = password === undefined ? undefined : passwordProblem(password, name)
    if (problem) throw new AccountError(`The password ${problem}.`)
    const secret = newTotpSecret()
    const now = this.clock.now()
    this.store.users.push({
      name,
      role,
      // No password until the person sets one with their enrolment code: nothing verifies against ''.
      password: password === undefined ? '' : await this.crypto.hash(password),
      // Set when the person sets their password (`welcome`), or now for the first administrator's.
      passwordChangedAt: password === undefined ? 0 : now,
      totp: await this.crypto.seal(secret, name),
      totpStep: -1,
      recovery: [],
      failures: 0,
      lockedAt: null,
      disabled: false,
      createdAt: now,
      createdBy,
      lastLoginAt: null,
    })
    this.save()
    return secret
  }

  /** S4, #31: a locked account unlocked — on a second administrator's approval, or at the console with the account's own code. */
  unlock(name: string, meta: ChangeMeta, reason: string): void {
    const u = this.mustFind(name)
    u.lockedAt = null
    u.failures = 0
    u.failedFrom = {}
    u.lockCause = null
    this.changed(u, 'unlocked', meta)
    this.save()
    this.action(meta, 'user.unlock', name, undefined, reason)
  }

  /** #31: disabling is the safe direction: one administrator, at once, recorded. */
  disable(by: string, name: string, reason: string): void {
    this.requireAdmin(by)
    if (by === name) throw new AccountError('An administrator cannot disable their own account.')
    this.mustFind(name).disabled = true
    this.save()
    this.events.emit({ type: 'admin.action', who: by, via: 'admin-page', action: 'user.disable', target: name, outcome: 'ok', reason })
  }

  /** #31: a disabled account enabled again, on a second administrator's approval. */
  enable(name: string, meta: ChangeMeta, reason: string): void {
    const u = this.mustFind(name)
    u.disabled = false
    this.changed(u, 'enabled', meta)
    this.save()
    this.action(meta, 'user.enable', name, undefined, reason)
  }

  /** #31: an administrator made operator or auditor is the safe direction: one administrator, at once, recorded. */
  lowerRole(by: string, name: string, role: Role, reason: string): void {
    this.requireAdmin(by)
    const u = this.mustFind(name)
    if (!isLowering(u.role, role)) throw new AccountError('Only taking the administrator role away is done at once; any other change of role is a proposal.')
    if (by === name) throw new AccountError('An administrator does not change their own role.')
    const from = u.role
    u.role = role
    this.save()
    this.events.emit({
      type: 'admin.action',
      who: by,
      via: 'admin-page',
      action: 'user.role',
      target: name,
      outcome: 'ok',
      reason,
      detail: `${from} → ${role}`,
    })
  }

  /** #31: any other change of role (raising one, or between operator and auditor), on a second administrator's approval. */
  setRole(name: string, role: Role, meta: ChangeMeta, reason: string): void {
    const u = this.mustFind(name)
    if (!ROLES.includes(role)) throw new AccountError(`No such role: ${role}.`)
    const from = u.role
    u.role = role
    this.changed(u, 'role', meta)
    this.save()
    this.action(meta, 'user.role', name, `${from} → ${role}`, reason)
  }

  /** An account's MFA reset (on a second administrator's approval): the person enrols a new authenticator at their next login. */
  async resetMfa(name: string, meta: ChangeMeta, reason: string): Promise<void> {
    const u = this.mustFind(name)
    await this.resetMfaSecret(u, meta.approver || meta.proposer, reason)
    this.changed(u, 'mfa-reset', meta)
    this.save()
  }

  /**
   * #31: an account's password reset (on a second administrator's approval): the old one stops
   * working, and the one-time enrolment code returned lets the person set a new one themselves.
   */
  resetPassword(name: string, meta: ChangeMeta, reason: string): string {
    const u = this.mustFind(name)
    u.password = ''
    const code = this.enrolmentCode(u)
    this.changed(u, 'password-reset', meta)
    this.save()
    this.action(meta, 'password.reset', name, undefined, reason)
    return code
  }

  /**
   * #31: the person with an enrolment code sets their own password; an account that has not
   * enrolled its authenticator goes on to enrol it (the page shows the QR code). The code works
   * once, for a day.
   */
  async welcome(name: string, code: string, password: string, clientAddress: string): Promise<{ enrol: boolean }> {
    const u = this.find(name)
    const e = u?.enrolment
    if (!u || !e || e.expiresAt <= this.clock.now() || !safeEqual(sha256(code.trim().toUpperCase()), e.hash) || u.disabled) {
      this.events.emit({
        type: 'admin.action',
        who: name,
        via: 'admin-page',
        action: 'user.welcome',
        target: name,
        outcome: 'refused',
        reason: 'enrolment code',
      })
      throw new AccountError('The name or the enrolment code is wrong, used or expired.')
    }
    const problem = passwordProblem(password, name)
    if (problem) throw new AccountError(`The password ${problem}.`)
    u.password = await this.crypto.hash(password)
    u.passwordChangedAt = this.clock.now()
    u.enrolment = null
    this.save()
    this.events.emit({
      type: 'admin.action',
      who: name,
      via: 'admin-page',
      action: 'user.welcome',
      target: name,
      outcome: 'ok',
      detail: `from ${clientAddress}`,
    })
    return { enrol: u.totpStep < 0 }
  }

  /**
   * #31: why `approver` may not approve a proposal of `proposer`, if it may not: its account was
   * made or changed (enabled, unlocked, given a role, its MFA or password reset) by the proposer or
   * on the proposer's proposal since `since` — an account someone minted does not approve their
   * changes. Undefined when it may.
   */
  mintedBy(approver: string, proposer: string, since: number): string | undefined {
    const u = this.find(approver)
    if (!u) return `${approver} is not an account of this box.`
    if (u.role !== 'admin' || u.disabled || u.lockedAt !== null) return `${approver} is not an active administrator.`
    const c = (u.changes ?? []).find((x) => x.at >= since && (x.proposer === proposer || x.approver === proposer))
    if (!c) return undefined
    return (
      `${approver}'s account was ${CHANGE_WORDS[c.change]} on ${new Date(c.at).toISOString()} ` +
      `(proposed by ${c.proposer}${c.approver ? `, approved by ${c.approver}` : ''}): it does not approve ${proposer}'s changes.`
    )
  }

  /**
   * #31: the second administrator when only one exists, enrolled like the first: a fresh one-time code
   * for the person at the box's console (`npm run account -- enrol NAME`, root on the box) — being at
   * the box is the second person. With two active administrators, accounts are proposals on the page.
   */
  async consoleEnrol(name: string, role: Role, operator: string): Promise<string> {
    const admins = this.store.users.filter((u) => u.role === 'admin' && !u.disabled && u.lockedAt === null).length
    if (admins >= 2) throw new AccountError('Two administrators exist: a new account is proposed on the admin page and approved by a second one.')
    return this.createPending(name, role, { proposer: `console:${operator}`, approver: '', via: 'console' })
  }

  /** #31: a locked account unlocked at the console, with a code from the account's own authenticator. */
  async consoleUnlock(name: string, code: string, operator: string): Promise<void> {
    const u = this.mustFind(name)
    if (u.lockedAt === null) throw new AccountError(`${name} is not locked.`)
    const step = u.totpStep >= 0 ? verifyTotp(await this.crypto.unseal(u.totp, name), code.trim(), this.clock.now(), u.totpStep) : undefined
    if (step === undefined) {
      this.events.emit({
        type: 'admin.action',
        who: `console:${operator}`,
        via: 'cli',
        action: 'user.unlock',
        target: name,
        outcome: 'refused',
        reason: 'wrong code',
      })
      throw new AccountError(`That is not a current code of ${name}'s authenticator.`)
    }
    u.totpStep = step
    this.unlock(name, { proposer: `console:${operator}`, approver: '', via: 'console' }, `at the console, with ${name}'s authenticator code`)
  }

  /**
   * #31: a locked account whose person has lost their authenticator, at the console: unlocked, its
   * password and MFA reset, and a fresh one-time code to set both again (the person, at the box).
   */
  async consoleReEnrol(name: string, operator: string, reason: string): Promise<string> {
    const u = this.mustFind(name)
    const meta: ChangeMeta = { proposer: `console:${operator}`, approver: '', via: 'console' }
    this.unlock(name, meta, reason)
    await this.resetMfa(name, meta, reason)
    return this.resetPassword(u.name, meta, reason)
  }
}
