/** The admin page's accounts as stored and as shown (accounts.ts keeps them). */
export type Role = 'admin' | 'operator' | 'auditor'
export const ROLES: readonly Role[] = ['admin', 'operator', 'auditor']

/** S4: five failed logins in a row lock the account until another administrator unlocks it. */
export const MAX_FAILURES = 5
/** S3: a change of password is asked for after this long. */
export const PASSWORD_MAX_AGE_MS = 90 * 86_400_000

export interface StoredUser {
  name: string
  role: Role
  password: string
  passwordChangedAt: number
  /** The TOTP secret, sealed: base64 of IV (12) ‖ tag (16) ‖ ciphertext. '' until enrolled. */
  totp: string
  /** The last TOTP step accepted: a code is never taken twice. */
  totpStep: number
  /** HMACs of the unused recovery codes. */
  recovery: string[]
  failures: number
  lockedAt: number | null
  disabled: boolean
  createdAt: number
  createdBy: string
  lastLoginAt: number | null
  /**
   * #31: a one-time code the person sets their own password with (a new account, a password
   * reset): its SHA-256 and when it stops being valid. Nobody else ever knows the password.
   */
  enrolment?: { hash: string; expiresAt: number } | null
  /** #31: what was done to the account and by whom (no approval by an account its proposer made or changed). */
  changes?: AccountChange[]
  /** #31: failed logins since the last success, by client address; kept as the lock's cause when it locks. */
  failedFrom?: Record<string, number>
  lockCause?: Record<string, number> | null
}

/** A change to an account, as the account keeps it. */
export interface AccountChange {
  at: number
  change: 'created' | 'enabled' | 'unlocked' | 'role' | 'mfa-reset' | 'password-reset'
  /** Who asked for it (the proposer; the console for a change made there). */
  proposer: string
  /** Who approved it ('' for a change that needs no approval). */
  approver: string
  via: 'admin-page' | 'console' | 'setup code'
}

/** Who made a change to an account, and through which door. */
export interface ChangeMeta {
  proposer: string
  approver: string
  via: AccountChange['via']
}

export interface Store {
  version: 1
  users: StoredUser[]
  /** SHA-256 of the pending setup code and when it stops being valid. */
  setup: { hash: string; expiresAt: number } | null
}

/** What the pages show of an account: never a secret. */
export interface UserView {
  name: string
  role: Role
  disabled: boolean
  locked: boolean
  failures: number
  mfaEnrolled: boolean
  recoveryCodesLeft: number
  createdAt: number
  createdBy: string
  lastLoginAt: number | null
  passwordChangedAt: number
  passwordExpired: boolean
  /** Made or reset and waiting for the person to set their password with their enrolment code. */
  enrolmentPending: boolean
  /** Why it locked: the client addresses of the failed logins, and how many from each. */
  lockCause: Record<string, number> | null
}

export type LoginResult =
  | { ok: true; user: UserView }
  /** One message for every refusal a person sees (S3: never says whether the name or the password was wrong); `reason` is for the audit trail. */
  | { ok: false; reason: 'unknown-user' | 'bad-password' | 'bad-code' | 'locked' | 'disabled' | 'not-enrolled'; lockedNow: boolean }

/** What the pages show of an account: never a secret. */
export function viewOf(u: StoredUser, now: number): UserView {
  return {
    name: u.name,
    role: u.role,
    disabled: u.disabled,
    locked: u.lockedAt !== null,
    failures: u.failures,
    mfaEnrolled: u.totpStep >= 0,
    recoveryCodesLeft: u.recovery.length,
    createdAt: u.createdAt,
    createdBy: u.createdBy,
    lastLoginAt: u.lastLoginAt,
    passwordChangedAt: u.passwordChangedAt,
    passwordExpired: now - u.passwordChangedAt > PASSWORD_MAX_AGE_MS,
    enrolmentPending: Boolean(u.enrolment && u.enrolment.expiresAt > now),
    lockCause: u.lockedAt !== null ? (u.lockCause ?? null) : null,
  }
}
