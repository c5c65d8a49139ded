import { pkcs11, type PKCS11 } from '../../hal/hsm/pkcs11.ts'

/**
 * #38: vendor modules' behaviour reproduced on SoftHSM, each a named profile that
 * wraps the pkcs11js object the token loads (TokenOptions.quirks). Nothing of our
 * own is replaced: every call not named by a profile goes to the real module.
 */
export type Quirk = (p: PKCS11) => PKCS11

/** A PKCS#11 error as pkcs11js throws it (toHsmError reads the CKR name from the message). */
export function ckrError(name: string): Error {
  const e = new Error(name)
  e.name = 'Pkcs11Error'
  return e
}

function intercept(p: PKCS11, calls: Record<string, (real: (...a: unknown[]) => unknown, args: unknown[]) => unknown>): PKCS11 {
  return new Proxy(p, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown
      if (typeof v !== 'function') return v
      const real = (v as (...a: unknown[]) => unknown).bind(target)
      const hook = calls[String(prop)]
      return hook ? (...args: unknown[]) => hook(real, args) : real
    },
  })
}

/** A session cap (CloudHSM: "Already maximum number of sessions are issued"): C_OpenSession fails with CKR_SESSION_COUNT after `max`. */
export const sessionCap =
  (max: number): Quirk =>
  (p) => {
    let open = 0
    return intercept(p, {
      C_OpenSession: (real, args) => {
        if (open >= max) throw ckrError('CKR_SESSION_COUNT')
        const s = real(...args)
        open++
        return s
      },
      C_CloseSession: (real, args) => {
        open = Math.max(0, open - 1)
        return real(...args)
      },
      C_Finalize: (real, args) => {
        open = 0
        return real(...args)
      },
    })
  }

/**
 * Throttling (CloudHSM answers CKR_DEVICE_ERROR when it is too busy): the named calls fail
 * while `busy()` says so; C_GetTokenInfo keeps answering, as the token is still there.
 */
export const deviceErrorBurst =
  (calls: readonly string[], busy: () => boolean, seen: { errors: number } = { errors: 0 }): Quirk =>
  (p) =>
    intercept(
      p,
      Object.fromEntries(
        calls.map((c) => [
          c,
          (real: (...a: unknown[]) => unknown, args: unknown[]) => {
            if (!busy()) return real(...args)
            seen.errors++
            throw ckrError('CKR_DEVICE_ERROR')
          },
        ]),
      ),
    )

/** The calls whose first argument is a session that must be logged in. */
const NEEDS_LOGIN = [
  'C_FindObjectsInit',
  'C_GetAttributeValue',
  'C_SignInit',
  'C_EncryptInit',
  'C_DecryptInit',
  'C_CreateObject',
  'C_GenerateKeyPair',
  'C_GenerateKey',
]

/**
 * Login per session (some HA and network modules): a session that did not call C_Login gets
 * CKR_USER_NOT_LOGGED_IN. SoftHSM logs the whole application in, so the real C_Login runs once.
 */
export const loginPerSession = (): Quirk => (p) => {
  const logged = new Set<string>()
  const key = (s: unknown) => Buffer.from(s as Buffer).toString('hex')
  const guard = (real: (...a: unknown[]) => unknown, args: unknown[]) => {
    if (!logged.has(key(args[0]))) throw ckrError('CKR_USER_NOT_LOGGED_IN')
    return real(...args)
  }
  return intercept(p, {
    ...Object.fromEntries(NEEDS_LOGIN.map((c) => [c, guard])),
    C_Login: (real, args) => {
      if (logged.has(key(args[0]))) throw ckrError('CKR_USER_ALREADY_LOGGED_IN')
      if (logged.size === 0) real(...args)
      logged.add(key(args[0]))
      return undefined
    },
    C_Finalize: (real, args) => {
      logged.clear()
      return real(...args)
    },
  })
}

/** A module not initialised in this process (as in a forked child): the next call after `arm()` fails with CKR_CRYPTOKI_NOT_INITIALIZED. */
export function notInitialised(): { quirk: Quirk; arm: () => void } {
  let armed = false
  return {
    arm: () => void (armed = true),
    quirk: (p) =>
      intercept(p, {
        C_FindObjectsInit: (real, args) => {
          if (!armed) return real(...args)
          armed = false
          throw ckrError('CKR_CRYPTOKI_NOT_INITIALIZED')
        },
      }),
  }
}

/** Missing mechanisms (devices without PSS, EdDSA or AES-GCM): left out of C_GetMechanismList, refused by C_GetMechanismInfo. */
export const missingMechanisms =
  (hidden: readonly number[]): Quirk =>
  (p) =>
    intercept(p, {
      C_GetMechanismList: (real, args) => (real(...args) as number[]).filter((m) => !hidden.includes(m)),
      C_GetMechanismInfo: (real, args) => {
        if (hidden.includes(args[1] as number)) throw ckrError('CKR_MECHANISM_INVALID')
        return real(...args)
      },
    })

/** Refused templates (a vendor's stricter rules): C_GenerateKey fails with `ckr` for every template. */
export const refusedSecretKeyTemplates =
  (ckr = 'CKR_TEMPLATE_INCONSISTENT'): Quirk =>
  (p) =>
    intercept(p, {
      C_GenerateKey: () => {
        throw ckrError(ckr)
      },
      C_GenerateKeyAsync: () => Promise.reject(ckrError(ckr)),
    })

/**
 * Logout drops the token (nShield softcards): after C_Logout every call fails with
 * CKR_TOKEN_NOT_PRESENT until the module is finalised and initialised again. `logouts`
 * counts the box's own C_Logout calls.
 */
export function logoutDropsToken(): { quirk: Quirk; logouts: { count: number } } {
  const logouts = { count: 0 }
  return {
    logouts,
    quirk: (p) => {
      let dropped = false
      return new Proxy(p, {
        get(target, prop) {
          const v = Reflect.get(target, prop, target) as unknown
          if (typeof v !== 'function') return v
          const real = (v as (...a: unknown[]) => unknown).bind(target)
          const name = String(prop)
          if (name === 'C_Logout')
            return (...args: unknown[]) => {
              logouts.count++
              dropped = true
              return real(...args)
            }
          if (name === 'C_Finalize')
            return (...args: unknown[]) => {
              dropped = false
              return real(...args)
            }
          if (name.startsWith('C_') && !['C_Initialize', 'C_CloseSession'].includes(name))
            return (...args: unknown[]) => {
              if (dropped) throw ckrError('CKR_TOKEN_NOT_PRESENT')
              return real(...args)
            }
          return real
        },
      })
    },
  }
}

/** What a token thread is told (ThreadQuirks.data): a profile by name, and memory shared with the test. */
type ThreadProfile =
  | {
      profile: 'deviceErrorBurst'
      calls: string[]
      /** [0]: 1 while the burst lasts; [1]: errors thrown, all threads together. */
      shared: SharedArrayBuffer
    }
  | { profile: 'gcmDraftOnly' }

/**
 * Called on each token thread (hal/hsm/init-worker.ts imports this module there): the profile
 * named in `data` wrapped around that thread's module.
 */
export function threadQuirk(p: PKCS11, data: unknown): PKCS11 {
  const d = data as ThreadProfile
  if (d.profile === 'gcmDraftOnly') return gcmDraftOnly(p)
  const flags = new Int32Array(d.shared)
  const busy = (call: string) => (real: (...a: unknown[]) => unknown, args: unknown[]) => {
    if (Atomics.load(flags, 0) !== 1) return real(...args)
    Atomics.add(flags, 1, 1)
    // A failed C_Sign (C_Encrypt, C_Decrypt) ends the operation its Init started (PKCS#11 2.40
    // §5.8, §5.11): the module's own call is made, so the session is free again, and its answer dropped.
    if (ENDS_OPERATION.includes(call)) {
      try {
        real(...args)
      } catch {
        // not what this profile reports
      }
    }
    throw ckrError('CKR_DEVICE_ERROR')
  }
  return intercept(p, Object.fromEntries(d.calls.map((c) => [c, busy(c)])))
}

const ENDS_OPERATION = ['C_Sign', 'C_Encrypt', 'C_Decrypt']

/**
 * A CKR_DEVICE_ERROR burst on calls the token threads make (C_Sign: every signature, DKIM, S/MIME,
 * HMAC tokens and audit checkpoints), switched on and off by the test; with `main` the same on the main thread.
 */
export function threadedDeviceErrorBurst(calls: readonly string[]) {
  const shared = new SharedArrayBuffer(8)
  const flags = new Int32Array(shared)
  const threadQuirks = { module: import.meta.url, data: { profile: 'deviceErrorBurst', calls: [...calls], shared } satisfies ThreadProfile }
  return {
    threadQuirks,
    start: () => Atomics.store(flags, 0, 1),
    stop: () => Atomics.store(flags, 0, 0),
    /** CKR_DEVICE_ERRORs thrown so far, on all token threads. */
    errors: () => Atomics.load(flags, 1),
  }
}

/**
 * A module that reads AES-GCM parameters only in the older draft layout (#38): `CK_GCM_PARAMS` with `ulIvBits`, the
 * PKCS#11 2.40 layout, is CKR_MECHANISM_PARAM_INVALID at C_EncryptInit and C_DecryptInit. On the token threads,
 * where the spool's encryption and the probe's GCM check run.
 */
function gcmDraftOnly(p: PKCS11): PKCS11 {
  const refuse240 = (real: (...a: unknown[]) => unknown, args: unknown[]) => {
    const m = args[1] as { mechanism: number; parameter?: { type?: number } }
    if (m.mechanism === pkcs11.CKM_AES_GCM && m.parameter?.type === pkcs11.CK_PARAMS_AES_GCM_v240) throw ckrError('CKR_MECHANISM_PARAM_INVALID')
    return real(...args)
  }
  return intercept(p, { C_EncryptInit: refuse240, C_DecryptInit: refuse240 })
}

/** The thread quirk of a module that reads only the draft AES-GCM layout. */
export const gcmDraftOnlyThreads = { module: import.meta.url, data: { profile: 'gcmDraftOnly' } satisfies ThreadProfile }
