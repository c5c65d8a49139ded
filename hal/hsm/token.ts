import { readFileSync, realpathSync, statSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Clock } from '../clock.ts'
import { HsmError, toHsmError } from './errors.ts'
import { OffThread, type OffThreadJob, type ThreadQuirks } from './off-thread.ts'
import { cleanLabel, pkcs11, type Handle, type PKCS11 } from './pkcs11.ts'

export interface TokenOptions {
  /** Path of the vendor's PKCS#11 module (.so). */
  module: string
  /** Label of the token to use, as set when it was initialised. */
  label: string
  /** File holding the user PIN; must be readable by the box only. */
  pinFile: string
  /** Sessions kept open; each can run one operation at a time. */
  sessions: number
  /** Minimum time between reconnection attempts after the token went away. */
  reconnectIntervalMs: number
  /** Extra environment the module reads at C_Initialize (SOFTHSM2_CONF for SoftHSM). */
  env?: Readonly<Record<string, string>>
  /** #38: the string a module reads from C_Initialize's pReserved (NSS softokn's `configdir='sql:…'`). */
  libraryParameters?: string
  clock: Clock
  /**
   * Refuse the calls that may wait inside the module on the main thread (#33): every
   * `C_*Init` that starts a cryptographic operation, and key generation but in its asynchronous
   * form. The tests run every token this way: a new synchronous call there fails a test. */
  strict?: boolean
  /** Test only (#38): wraps the module to reproduce a vendor's behaviour on SoftHSM; on token threads, `threadQuirks`. */
  quirks?: (p: PKCS11) => PKCS11
  threadQuirks?: ThreadQuirks
}

/** The calls `strict` refuses on the main thread (they run on a token thread, off-thread.ts, or in their *Async form). */
export const MAIN_THREAD_FORBIDDEN = [
  'C_SignInit',
  'C_EncryptInit',
  'C_DecryptInit',
  'C_VerifyInit',
  'C_DigestInit',
  'C_GenerateKey',
  'C_GenerateKeyPair',
] as const

export type TokenState = 'closed' | 'connected' | 'unavailable'

interface Connection {
  p: PKCS11
  slot: Handle
  sessions: Handle[]
  free: Handle[]
  waiting: ((s: Handle) => void)[]
  generation: number
  /** Operations running on this connection's sessions. */
  active: number
  /** Dropped: finalised once the last active operation returns. */
  dead: boolean
}

/** Failures after which the token connection is dropped and made again. */
const RECONNECT_ON = new Set(['EHSM_UNAVAILABLE'])
/** Unexplained failures (EHSM_FAILED) in a row after which the connection is dropped too. */
const MAX_CONSECUTIVE_FAILURES = 3
/** #38: back-off before each retry, on the same connection, of an operation a throttling token refused (CKR_DEVICE_ERROR). */
const THROTTLE_BACKOFF_MS = [25, 100, 400] as const
/** Operations that change objects are not repeated: a retry could make a second one. */
const NOT_REPEATED = /^C_(Create|Generate|Copy|Destroy|SetAttribute|Unwrap|Derive)/

/** Reads a PIN file, refusing one that group or others could read (M6: the PIN protects the keys). */
export function readPinFile(path: string): string {
  let mode: number
  try {
    mode = statSync(path).mode
  } catch (err) {
    throw new HsmError('EHSM_PIN_FILE', `${path}: ${(err as NodeJS.ErrnoException).code}`)
  }
  if (mode & 0o077) throw new HsmError('EHSM_PIN_FILE', `${path} has mode ${(mode & 0o777).toString(8)}; make it 0600`)
  const pin = readFileSync(path, 'utf8').replace(/\r?\n$/, '')
  if (!pin) throw new HsmError('EHSM_PIN_FILE', `${path} is empty`)
  return pin
}

/**
 * The module is code the box loads into itself, and its path comes from the
 * configuration, which is read before its HMAC can be checked (the check
 * needs the HSM). So the module is loaded only from a regular file root owns
 * and only root can write, in directories only root can write, as sshd's
 * StrictModes judges its files: a path written into the data directory
 * behind the box's back cannot name a library of the attacker's.
 */
export function assertSafeModule(path: string): void {
  let real: string
  try {
    real = realpathSync(path)
  } catch (err) {
    throw new HsmError('EHSM_UNAVAILABLE', `cannot load PKCS#11 module ${path}: ${(err as NodeJS.ErrnoException).code}`)
  }
  const unsafe = (p: string, why: string) => new HsmError('EHSM_MODULE_UNSAFE', `${p} ${why}${p === real ? '' : ` (above the module ${real})`}`)
  const f = statSync(real)
  if (!f.isFile()) throw unsafe(real, 'is not a regular file')
  for (let p = real; ; p = dirname(p)) {
    const st = p === real ? f : statSync(p)
    if (st.uid !== 0) throw unsafe(p, `is owned by uid ${st.uid}, not root`)
    if (st.mode & 0o022) throw unsafe(p, `has mode ${(st.mode & 0o7777).toString(8)}: writable by group or others`)
    if (p === dirname(p)) return
  }
}

/**
 * One PKCS#11 token: the module loaded, the token found by label, a pool of logged-in sessions. Operations borrow
 * a session for their duration, so N callers run on N sessions at once (pkcs11js's *Async calls run on the libuv
 * thread pool and do not block the event loop). When the token goes away the connection is dropped; the next
 * operation after `reconnectIntervalMs` connects again, so the box recovers on its own when the token returns.
 */
export class Token {
  readonly #opts: TokenOptions
  #conn: Connection | undefined
  #connecting: Promise<Connection> | undefined
  #lastAttempt = -Infinity
  #lastError: HsmError | undefined
  #generation = 0
  #state: TokenState = 'closed'
  #consecutiveFailures = 0
  #sessionsOpen = 0
  /** Called whenever the connection is made again; key handle caches listen to clear themselves. */
  onReconnect: (() => void) | undefined
  /** Called at once when the token is found gone or back (S11: reported when seen, not at the next health check). */
  onStateChange: ((state: TokenState) => void) | undefined
  /** The threads that run an operation and its `Init` whole (#33), made with the first connection. */
  #offThread: OffThread | undefined

  constructor(opts: TokenOptions) {
    this.#opts = opts
  }

  get state(): TokenState {
    return this.#state
  }

  get lastError(): HsmError | undefined {
    return this.#lastError
  }

  /** Sessions the module gave at the last connect: `sessions`, or fewer where the module caps them (#38). */
  get sessionsOpen(): number {
    return this.#sessionsOpen
  }

  /** Changes each time a new connection is made (object handles of older generations are invalid). */
  get generation(): number {
    return this.#generation
  }

  async open(): Promise<void> {
    await this.#connection(true)
  }

  /** Closes the sessions and finalises the module (the token threads stay, idle: off-thread.ts). */
  close(): Promise<void> {
    const conn = this.#conn
    this.#conn = undefined
    this.#state = 'closed'
    if (conn) {
      conn.dead = true
      if (conn.active === 0) this.#teardown(conn)
    }
    return Promise.resolve()
  }

  /**
   * Runs a cryptographic operation with the `Init` that starts it, whole, on a token thread
   * (#33): the main thread never waits inside the module. On a session of its own, like `run`.
   */
  runWhole(operation: string, key: Handle, op: OffThreadJob['op'], mechanism: OffThreadJob['mechanism'], input: Buffer, outLength: number): Promise<Buffer> {
    return this.run(operation, (session) => {
      this.#offThread ??= OffThread.for(this.#opts.module, this.#opts.env ?? {}, this.#opts.sessions, this.#opts.threadQuirks)
      return this.#offThread.run(op, session, key, mechanism, input, outLength)
    })
  }

  /** Token information for status pages (label, model, serial, flags). */
  async info(): Promise<{ label: string; manufacturer: string; model: string; serial: string }> {
    return this.run('C_GetTokenInfo', (_s, p, slot) => {
      const i = p.C_GetTokenInfo(slot)
      return {
        label: cleanLabel(i.label),
        manufacturer: cleanLabel(i.manufacturerID),
        model: cleanLabel(i.model),
        serial: cleanLabel(i.serialNumber),
      }
    })
  }

  /**
   * Runs `fn` on a session of its own. Errors come out as HsmError; a lost
   * token drops the connection so the next call reconnects.
   */
  run<T>(operation: string, fn: (session: Handle, p: PKCS11, slot: Handle) => T | Promise<T>): Promise<T> {
    // Fast path: connected with a free session, no extra promise hops.
    const conn = this.#conn
    const session = conn?.free.pop()
    if (conn && session) return this.#exec(conn, session, operation, fn)
    return this.#connection(false).then(async (c) => this.#exec(c, await this.#acquire(c), operation, fn))
  }

  async #exec<T>(conn: Connection, session: Handle, operation: string, fn: (session: Handle, p: PKCS11, slot: Handle) => T | Promise<T>): Promise<T> {
    conn.active++
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          const result = await fn(session, conn.p, conn.slot)
          this.#consecutiveFailures = 0
          return result
        } catch (err) {
          const e = toHsmError(err, operation)
          if (!this.#throttled(conn, e, operation)) throw e
          if (attempt >= THROTTLE_BACKOFF_MS.length) throw new HsmError('EHSM_BUSY', `${operation}: CKR_DEVICE_ERROR after ${attempt + 1} tries`)
          await new Promise((r) => setTimeout(r, THROTTLE_BACKOFF_MS[attempt]))
        }
      }
    } catch (err) {
      const e = toHsmError(err, operation)
      if (e.code === 'EHSM_FAILED') this.#consecutiveFailures++
      if (RECONNECT_ON.has(e.code) || this.#consecutiveFailures >= MAX_CONSECUTIVE_FAILURES) {
        this.#consecutiveFailures = 0
        this.#drop(conn, e)
      }
      throw e
    } finally {
      conn.active--
      this.#release(conn, session)
      if (conn.dead && conn.active === 0) this.#teardown(conn)
    }
  }

  /** #38: CKR_DEVICE_ERROR from a token that still answers C_GetTokenInfo is throttling, not a lost token. */
  #throttled(conn: Connection, e: HsmError, operation: string): boolean {
    if (e.ckr !== 'CKR_DEVICE_ERROR' || NOT_REPEATED.test(operation)) return false
    try {
      conn.p.C_GetTokenInfo(conn.slot)
      return true
    } catch {
      return false
    }
  }

  /**
   * Drops the connection because something showed the token is not what it
   * was (a key seen before is gone). The next operation connects again.
   */
  invalidate(reason: HsmError): void {
    if (this.#conn) this.#drop(this.#conn, reason)
  }

  async #connection(force: boolean): Promise<Connection> {
    if (this.#conn) return this.#conn
    if (this.#connecting) return this.#connecting
    const now = this.#opts.clock.now()
    if (!force && now - this.#lastAttempt < this.#opts.reconnectIntervalMs) {
      throw this.#lastError ?? new HsmError('EHSM_UNAVAILABLE')
    }
    this.#lastAttempt = now
    this.#connecting = Promise.resolve().then(() => this.#connect())
    try {
      this.#conn = await this.#connecting
      this.#lastError = undefined
      this.onReconnect?.()
      this.#setState('connected')
      return this.#conn
    } catch (err) {
      this.#lastError = toHsmError(err, 'connect')
      this.#setState('unavailable')
      throw this.#lastError
    } finally {
      this.#connecting = undefined
    }
  }

  #connect(): Connection {
    const pin = readPinFile(this.#opts.pinFile)
    for (const [k, v] of Object.entries(this.#opts.env ?? {})) process.env[k] = v
    assertSafeModule(this.#opts.module)
    const loaded = this.#opts.quirks ? this.#opts.quirks(new pkcs11.PKCS11()) : new pkcs11.PKCS11()
    const p = this.#opts.strict ? strictly(loaded) : loaded
    try {
      p.load(this.#opts.module)
    } catch (err) {
      throw new HsmError('EHSM_UNAVAILABLE', `cannot load PKCS#11 module ${this.#opts.module}`, { cause: err })
    }
    const sessions: Handle[] = []
    try {
      try {
        // Operations run on several threads at once (pkcs11js *Async): the module must use its own locking.
        const params = this.#opts.libraryParameters
        p.C_Initialize({ flags: pkcs11.CKF_OS_LOCKING_OK, ...(params ? { libraryParameters: params } : {}) })
      } catch (err) {
        if (!/CKR_CRYPTOKI_ALREADY_INITIALIZED/.test(String((err as Error).message))) throw err
      }
      const slot = p.C_GetSlotList(true).find((s) => cleanLabel(p.C_GetTokenInfo(s).label) === this.#opts.label)
      if (!slot) throw new HsmError('EHSM_TOKEN_NOT_FOUND', `label "${this.#opts.label}"`)
      const flags = pkcs11.CKF_SERIAL_SESSION | pkcs11.CKF_RW_SESSION
      // #38: a module that caps its sessions (CloudHSM, HA groups) gives fewer: the pool is what it gives.
      for (let i = 0; i < this.#opts.sessions; i++) {
        try {
          sessions.push(p.C_OpenSession(slot, flags))
        } catch (err) {
          if (sessions.length === 0 || !/CKR_SESSION_COUNT/.test(String((err as Error).message))) throw err
          break
        }
      }
      this.#sessionsOpen = sessions.length
      // Every session logged in: most modules log in the whole application (CKR_USER_ALREADY_LOGGED_IN after); some want each (#38).
      for (const s of sessions) {
        try {
          p.C_Login(s, pkcs11.CKU_USER, pin)
        } catch (err) {
          if (!/CKR_USER_ALREADY_LOGGED_IN/.test(String((err as Error).message))) throw err
        }
      }
      this.#generation++
      return { p, slot, sessions, free: [...sessions], waiting: [], generation: this.#generation, active: 0, dead: false }
    } catch (err) {
      this.#teardown({ p, slot: Buffer.alloc(0), sessions, free: [], waiting: [], generation: 0, active: 0, dead: true })
      throw toHsmError(err, 'connect')
    }
  }

  #drop(conn: Connection, err: HsmError): void {
    if (this.#conn !== conn) return
    this.#conn = undefined
    this.#lastError = err
    this.#setState('unavailable')
    conn.dead = true
    // Let callers already waiting for a session fail fast instead of hanging.
    for (const w of conn.waiting.splice(0)) w(Buffer.alloc(0))
    // Sessions still in use are finalised when their operation returns (run()).
    if (conn.active === 0) this.#teardown(conn)
  }

  #setState(state: TokenState): void {
    if (state === this.#state) return
    this.#state = state
    try {
      this.onStateChange?.(state)
    } catch {
      // a listener's failure is not the token's
    }
  }

  #teardown(conn: Connection): void {
    for (const s of conn.sessions) {
      try {
        conn.p.C_CloseSession(s)
      } catch {
        // the token may already be gone; nothing to close
      }
    }
    try {
      conn.p.C_Finalize()
    } catch {
      // as above
    }
    try {
      conn.p.close()
    } catch {
      // as above
    }
  }

  #acquire(conn: Connection): Promise<Handle> {
    const s = conn.free.pop()
    if (s) return Promise.resolve(s)
    return new Promise<Handle>((resolve, reject) => {
      conn.waiting.push((session) => (session.length ? resolve(session) : reject(this.#lastError ?? new HsmError('EHSM_UNAVAILABLE'))))
    })
  }

  #release(conn: Connection, session: Handle): void {
    if (this.#conn !== conn) return
    const next = conn.waiting.shift()
    if (next) next(session)
    else conn.free.push(session)
  }
}

/** A module whose calls that may wait are refused on this thread (`TokenOptions.strict`). */
function strictly(p: PKCS11): PKCS11 {
  const forbidden = new Set<string | symbol>(MAIN_THREAD_FORBIDDEN)
  return new Proxy(p, {
    get(target, prop) {
      if (forbidden.has(prop))
        return () => {
          throw new HsmError('EHSM_MAIN_THREAD', `${String(prop)} on the main thread: use its asynchronous form, or Token.runWhole (#33)`)
        }
      const v = Reflect.get(target, prop, target) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    },
  })
}
