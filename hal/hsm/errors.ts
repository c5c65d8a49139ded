/**
 * HSM failures with stable codes and messages an admin can act on. Every
 * CKR_* value a token returns maps to one of these; the raw CKR name is kept
 * for the log.
 */
export const HSM_ERRORS = {
  EHSM_UNAVAILABLE: { transient: true, text: 'the HSM is not reachable (token removed, module failed, or session lost); retrying' },
  EHSM_TOKEN_NOT_FOUND: { transient: true, text: 'no token with the configured label is present in any slot' },
  EHSM_PIN_INCORRECT: { transient: false, text: 'the HSM refused the PIN in the PIN file' },
  EHSM_PIN_LOCKED: { transient: false, text: 'the HSM PIN is locked or expired; the security officer must reset it' },
  EHSM_PIN_FILE: { transient: false, text: 'the PIN file is missing, empty or readable by others than the box' },
  EHSM_MODULE_UNSAFE: { transient: false, text: 'the PKCS#11 module, or a directory above it, could be replaced by someone other than root' },
  EHSM_KEY_NOT_FOUND: { transient: false, text: 'no key or certificate with that label in the token' },
  EHSM_KEY_EXISTS: { transient: false, text: 'an object with that label already exists in the token' },
  EHSM_KEY_UNEXTRACTABLE: { transient: false, text: 'the token refused to reveal key material (keys are non-extractable by design)' },
  EHSM_KEY_UNUSABLE: { transient: false, text: 'the key does not allow this operation or is of the wrong type' },
  EHSM_MECHANISM_UNSUPPORTED: { transient: false, text: 'the token does not support this algorithm' },
  EHSM_DATA_INVALID: { transient: false, text: 'the data or ciphertext was rejected by the token (wrong length, or failed authentication)' },
  EHSM_TOKEN_FULL: { transient: false, text: 'the token is out of memory for new objects' },
  EHSM_BAD_INPUT: { transient: false, text: 'the input (certificate, PKCS#12, key) could not be read' },
  EHSM_FAILED: { transient: true, text: 'the HSM reported an unexpected failure' },
  EHSM_BUSY: { transient: true, text: 'the HSM is present but refuses work for now (throttled, or no session free); retried with back-off' },
  EHSM_MAIN_THREAD: { transient: false, text: 'a token call that may wait was made on the main thread (a bug: it would stall the box)' },
} as const

export type HsmErrorCode = keyof typeof HSM_ERRORS

export class HsmError extends Error {
  readonly code: HsmErrorCode
  /** The PKCS#11 return value name, e.g. CKR_PIN_INCORRECT, when the token returned one. */
  readonly ckr: string | undefined
  readonly transient: boolean

  constructor(code: HsmErrorCode, detail?: string, opts: { ckr?: string; cause?: unknown } = {}) {
    const spec = HSM_ERRORS[code]
    super(`${code}: ${spec.text}${detail ? ` (${detail})` : ''}`, { cause: opts.cause })
    this.name = 'HsmError'
    this.code = code
    this.ckr = opts.ckr
    this.transient = spec.transient
  }
}

const BY_CKR: Record<string, HsmErrorCode> = {
  CKR_DEVICE_REMOVED: 'EHSM_UNAVAILABLE',
  CKR_DEVICE_ERROR: 'EHSM_UNAVAILABLE',
  CKR_TOKEN_NOT_PRESENT: 'EHSM_UNAVAILABLE',
  CKR_TOKEN_NOT_RECOGNIZED: 'EHSM_UNAVAILABLE',
  CKR_SESSION_HANDLE_INVALID: 'EHSM_UNAVAILABLE',
  CKR_SESSION_CLOSED: 'EHSM_UNAVAILABLE',
  // #38: a session cap (CloudHSM, HA groups) is the token saying "not more", not a lost token.
  CKR_SESSION_COUNT: 'EHSM_BUSY',
  CKR_SLOT_ID_INVALID: 'EHSM_UNAVAILABLE',
  CKR_CRYPTOKI_NOT_INITIALIZED: 'EHSM_UNAVAILABLE',
  CKR_USER_NOT_LOGGED_IN: 'EHSM_UNAVAILABLE',
  // SoftHSM also answers a failed GCM tag check with CKR_GENERAL_ERROR, so it
  // is not by itself a sign of a lost token (see Token: repeated failures are).
  CKR_GENERAL_ERROR: 'EHSM_FAILED',
  CKR_PIN_INCORRECT: 'EHSM_PIN_INCORRECT',
  CKR_PIN_INVALID: 'EHSM_PIN_INCORRECT',
  CKR_PIN_LEN_RANGE: 'EHSM_PIN_INCORRECT',
  CKR_PIN_LOCKED: 'EHSM_PIN_LOCKED',
  CKR_PIN_EXPIRED: 'EHSM_PIN_LOCKED',
  CKR_KEY_HANDLE_INVALID: 'EHSM_KEY_NOT_FOUND',
  CKR_OBJECT_HANDLE_INVALID: 'EHSM_KEY_NOT_FOUND',
  CKR_ATTRIBUTE_SENSITIVE: 'EHSM_KEY_UNEXTRACTABLE',
  CKR_KEY_UNEXTRACTABLE: 'EHSM_KEY_UNEXTRACTABLE',
  CKR_KEY_NOT_WRAPPABLE: 'EHSM_KEY_UNEXTRACTABLE',
  CKR_KEY_FUNCTION_NOT_PERMITTED: 'EHSM_KEY_UNUSABLE',
  CKR_KEY_TYPE_INCONSISTENT: 'EHSM_KEY_UNUSABLE',
  CKR_KEY_SIZE_RANGE: 'EHSM_KEY_UNUSABLE',
  CKR_MECHANISM_INVALID: 'EHSM_MECHANISM_UNSUPPORTED',
  CKR_MECHANISM_PARAM_INVALID: 'EHSM_MECHANISM_UNSUPPORTED',
  CKR_FUNCTION_NOT_SUPPORTED: 'EHSM_MECHANISM_UNSUPPORTED',
  CKR_DATA_INVALID: 'EHSM_DATA_INVALID',
  CKR_DATA_LEN_RANGE: 'EHSM_DATA_INVALID',
  CKR_ENCRYPTED_DATA_INVALID: 'EHSM_DATA_INVALID',
  CKR_ENCRYPTED_DATA_LEN_RANGE: 'EHSM_DATA_INVALID',
  CKR_SIGNATURE_INVALID: 'EHSM_DATA_INVALID',
  CKR_DEVICE_MEMORY: 'EHSM_TOKEN_FULL',
  CKR_HOST_MEMORY: 'EHSM_FAILED',
}

/** Maps anything pkcs11js throws to an HsmError; an HsmError passes through. */
export function toHsmError(err: unknown, operation: string): HsmError {
  if (err instanceof HsmError) return err
  const message = err instanceof Error ? err.message : String(err)
  const ckr = /CKR_[A-Z_]+/.exec(message)?.[0]
  // No CKR value: a pkcs11js native failure means the module itself is in
  // trouble; anything else is a fault in our own code, not a lost token.
  const native = err instanceof Error && (err.name === 'NativeError' || err.name === 'Pkcs11Error')
  const code = (ckr && BY_CKR[ckr]) || (ckr || !native ? 'EHSM_FAILED' : 'EHSM_UNAVAILABLE')
  return new HsmError(code, `${operation}${ckr ? `: ${ckr}` : `: ${message}`}`, { ckr, cause: err })
}
