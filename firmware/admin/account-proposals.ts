import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import type { Clock } from '../../hal/clock.ts'
import { ProposalError, ProposalFiles, type ProposalRecord, type ProposalState } from '../config/proposal-files.ts'
import type { EventSink } from '../events.ts'
import { AccountError, isLowering, ROLES, type Accounts, type ChangeMeta, type Role } from './accounts.ts'

/** What a proposal asks to do to an account (#31): everything that makes or strengthens one. */
export type AccountRequest =
  | { kind: 'create'; name: string; role: Role }
  | { kind: 'role'; name: string; role: Role }
  | { kind: 'reset-mfa'; name: string }
  | { kind: 'reset-password'; name: string }
  | { kind: 'enable'; name: string }
  | { kind: 'unlock'; name: string }

export interface AccountProposal extends ProposalRecord {
  change: AccountRequest
}

/** What an approval did: for a new account or a password reset, the one-time enrolment code the approver hands on. */
export interface Approved {
  proposal: AccountProposal
  enrolmentCode?: string
}

const WORDS: Record<AccountRequest['kind'], string> = {
  create: 'make the account',
  role: 'give the role',
  'reset-mfa': 'reset the authenticator of',
  'reset-password': 'reset the password of',
  enable: 'enable again',
  unlock: 'unlock',
}

/** `make the account lin (operator)`: a proposal in words, for the page and the trail. */
export function describe(c: AccountRequest): string {
  return c.kind === 'create' || c.kind === 'role' ? `${WORDS[c.kind]} ${c.name} (${c.role})` : `${WORDS[c.kind]} ${c.name}`
}

/**
 * Four eyes on the accounts (#31; S5, S6; DESIGN "change needs two people —
 * two real ones"). Making an account, giving one a role, re-enabling,
 * unlocking and resetting another's authenticator or password are proposals,
 * applied only when a different existing administrator approves with their
 * authenticator code again — never by its author, whatever
 * `admin.allowSelfApproval` says, and never by an account the author made or
 * changed within the proposal's lifetime (`Accounts.mintedBy`). The approver
 * of a new account or a password reset gets the person's one-time enrolment
 * code, never a password: the person sets their own.
 */
export class AccountProposals {
  readonly #files: ProposalFiles<AccountProposal>
  readonly #accounts: Accounts
  readonly #clock: Clock
  readonly #events: EventSink
  readonly #expiryMs: number

  constructor(o: { dataDir: string; accounts: Accounts; clock: Clock; events: EventSink; expiryHours: number }) {
    this.#files = new ProposalFiles<AccountProposal>(join(o.dataDir, 'admin', 'proposals'), o.clock, (p, state, who) => this.#event(p, state, who))
    this.#accounts = o.accounts
    this.#clock = o.clock
    this.#events = o.events
    this.#expiryMs = o.expiryHours * 3_600_000
  }

  /** A proposal, checked now against the accounts as they are (a ProposalError says why not). */
  propose(author: string, change: AccountRequest, reason: string): AccountProposal {
    if (!reason.trim()) throw new ProposalError('A reason is needed: the audit trail and the approver read it.')
    this.#check(author, change)
    if (this.list().some((p) => p.state === 'open' && p.change.name === change.name && p.change.kind === change.kind))
      throw new ProposalError(`There is an open proposal to ${describe(change)} already.`)
    const now = this.#clock.now()
    const p: AccountProposal = {
      id: randomBytes(6).toString('hex'),
      author,
      reason: reason.trim(),
      createdAt: now,
      expiresAt: now + this.#expiryMs,
      state: 'open',
      change,
    }
    this.#files.save(p)
    this.#event(p, 'proposed', author)
    return p
  }

  list(): AccountProposal[] {
    return this.#files.list()
  }

  get(id: string): AccountProposal | undefined {
    return this.#files.get(id)
  }

  /**
   * A second administrator approves with a fresh code from their authenticator, and the change is
   * applied. Refused for the author, for an account the author made or changed within the
   * proposal's lifetime, and for a wrong code (which counts towards the approver's lockout).
   */
  async approve(id: string, approver: string, code: string): Promise<Approved> {
    const p = this.#files.mustOpen(id)
    if (p.author === approver) throw new ProposalError('A change to an account is approved by a second administrator, not by its author.')
    const minted = this.#accounts.mintedBy(approver, p.author, Math.min(p.createdAt, this.#clock.now() - this.#expiryMs))
    if (minted) {
      this.#event(p, 'approval-refused', approver, minted)
      throw new ProposalError(minted)
    }
    if (!(await this.#accounts.verifyCode(approver, code))) throw new ProposalError('That authenticator code is not right. 驗證碼錯誤。')
    const meta: ChangeMeta = { proposer: p.author, approver, via: 'admin-page' }
    let enrolmentCode: string | undefined
    try {
      this.#check(p.author, p.change)
      enrolmentCode = await this.#apply(p, meta)
    } catch (err) {
      if (!(err instanceof AccountError || err instanceof ProposalError)) throw err
      this.#files.decide(p, 'failed', approver, { note: err.message })
      throw new ProposalError(`Not applied: ${err.message}`)
    }
    this.#files.decide(p, 'approved', approver)
    return { proposal: p, ...(enrolmentCode ? { enrolmentCode } : {}) }
  }

  /** The author or any administrator withdraws an open proposal. */
  withdraw(id: string, who: string): void {
    this.#files.decide(this.#files.mustOpen(id), 'withdrawn', who)
  }

  async #apply(p: AccountProposal, meta: ChangeMeta): Promise<string | undefined> {
    const c = p.change
    switch (c.kind) {
      case 'create':
        return this.#accounts.createPending(c.name, c.role, meta)
      case 'role':
        this.#accounts.setRole(c.name, c.role, meta, p.reason)
        return undefined
      case 'reset-mfa':
        await this.#accounts.resetMfa(c.name, meta, p.reason)
        return undefined
      case 'reset-password':
        return this.#accounts.resetPassword(c.name, meta, p.reason)
      case 'enable':
        this.#accounts.enable(c.name, meta, p.reason)
        return undefined
      case 'unlock':
        this.#accounts.unlock(c.name, meta, p.reason)
        return undefined
    }
  }

  /** Whether the change makes sense for the accounts as they are. */
  #check(author: string, c: AccountRequest): void {
    if (c.kind === 'create') return this.#accounts.checkNewName(c.name, c.role)
    const u = this.#accounts.user(c.name)
    if (!u) throw new ProposalError(`No account named ${c.name}.`)
    if (c.name === author) throw new ProposalError('A change to your own account is not proposed here: use My account, or ask another administrator.')
    if (c.kind === 'role' && (!ROLES.includes(c.role) || c.role === u.role)) throw new ProposalError(`${c.name} has the role ${u.role}; choose another.`)
    if (c.kind === 'role' && isLowering(u.role, c.role)) throw new ProposalError('Taking the administrator role away is done at once, not proposed.')
    if (c.kind === 'enable' && !u.disabled) throw new ProposalError(`${c.name} is not disabled.`)
    if (c.kind === 'unlock' && !u.locked) throw new ProposalError(`${c.name} is not locked.`)
  }

  #event(p: AccountProposal, state: ProposalState | 'proposed' | 'approval-refused', who: string, note?: string): void {
    this.#events.emit({
      type: 'admin.action',
      who,
      via: 'admin-page',
      action: `user.proposal.${state}`,
      target: p.change.name,
      outcome: state === 'approval-refused' || state === 'failed' ? 'refused' : 'ok',
      reason: p.reason,
      detail: `${describe(p.change)}; proposal ${p.id} by ${p.author}${state === 'approved' ? `, approved by ${who}` : ''}${note ? `; ${note}` : ''}`,
    })
  }
}
