import { randomBytes } from 'node:crypto'
import type { Clock } from '../../hal/clock.ts'
import type { Role } from './accounts.ts'

/**
 * Server-side sessions of the admin page (S4): the cookie carries only a
 * random id; what it stands for lives here and ends here (logout, idle
 * timeout, absolute timeout, the account disabled). A login always makes a
 * new id, so an id someone planted before the login is worth nothing after
 * it (no fixation).
 */
export interface Session {
  readonly id: string
  /** Logged in as; undefined for a session that only carries an enrolment in progress. */
  readonly user: string | undefined
  readonly role: Role | undefined
  /** The account whose MFA is being enrolled, after its password (or the setup code) was given. */
  readonly enrolling: string | undefined
  readonly createdAt: number
  lastSeen: number
  /** Recovery codes to show once, right after enrolment. */
  recoveryCodes?: string[]
}

/** S4: the session cookie: `__Host-` (this host only, Secure, path /), HttpOnly, SameSite=Strict. */
export const SESSION_COOKIE = '__Host-sg-session'
export const COOKIE_OPTIONS = { path: '/', secure: true, httpOnly: true, sameSite: 'strict' } as const

/** More sessions than a box's admins ever hold; the oldest go first, so a flood cannot grow memory. */
const MAX_SESSIONS = 10_000

export class Sessions {
  readonly #byId = new Map<string, Session>()
  readonly #clock: Clock
  readonly #idleMs: number
  readonly #maxMs: number

  constructor(o: { clock: Clock; idleMinutes: number; maxHours: number }) {
    this.#clock = o.clock
    this.#idleMs = o.idleMinutes * 60_000
    this.#maxMs = o.maxHours * 3_600_000
  }

  create(fields: { user?: string; role?: Role; enrolling?: string }): Session {
    while (this.#byId.size >= MAX_SESSIONS) this.#byId.delete(this.#byId.keys().next().value!)
    const now = this.#clock.now()
    const s: Session = {
      id: randomBytes(32).toString('base64url'),
      user: fields.user,
      role: fields.role,
      enrolling: fields.enrolling,
      createdAt: now,
      lastSeen: now,
    }
    this.#byId.set(s.id, s)
    return s
  }

  /** The live session with this id (its idle time starts again), or undefined: unknown, idle too long, or too old. */
  get(id: string | undefined): Session | undefined {
    if (!id) return undefined
    const s = this.#byId.get(id)
    if (!s) return undefined
    const now = this.#clock.now()
    if (now - s.lastSeen > this.#idleMs || now - s.createdAt > this.#maxMs) {
      this.#byId.delete(id)
      return undefined
    }
    s.lastSeen = now
    return s
  }

  end(id: string): void {
    this.#byId.delete(id)
  }

  /** Every session of an account (it was disabled or locked). */
  endUser(user: string): void {
    for (const [id, s] of this.#byId) if (s.user === user || s.enrolling === user) this.#byId.delete(id)
  }

  /** Sessions logged in now, for the dashboard. */
  active(): Session[] {
    const now = this.#clock.now()
    return [...this.#byId.values()].filter((s) => s.user && now - s.lastSeen <= this.#idleMs && now - s.createdAt <= this.#maxMs)
  }
}
