import { codedError, oneOff } from '../hal/errors.ts'

/**
 * The box's error codes outside SMTP (#34): one table, like the SMTP one in errors.ts,
 * pinned row by row by test/firmware/box-errors.test.ts. Operators and tools match on the
 * codes (the log's `code`, a tool's exit message), so a code is never renamed, only added.
 * The HSM's codes are hal/hsm/errors.ts's, the SMTP replies errors.ts's.
 */
export const BOX_ERRORS = {
  // --- configuration (S7, S9) ---
  ECONFIG_INVALID: 'a configuration value is missing or wrong',
  ECONFIG_TAMPERED: 'a configuration version was changed outside the box',
  EPROPOSAL_REFUSED: 'a configuration change cannot be proposed, approved or withdrawn as asked',
  // --- accounts and the operator's tools (S3–S5, S8, S12) ---
  EACCOUNT_REFUSED: 'an account change is refused',
  ECONTROL_REFUSED: 'the control socket refuses the request',
  EANSWERS_INVALID: 'a provisioning answer is missing or wrong',
  EBACKUP_INVALID: 'a configuration backup cannot be opened or restored',
  // --- firmware updates (S10) ---
  EBUNDLE_INVALID: 'a firmware bundle is not genuine, not for this box, or not well formed',
  EUPDATE_REFUSED: 'an update step is refused in the state the slots are in',
  // --- the spool (M10) ---
  ERECORD_INVALID: 'a spool record cannot be read: damaged, or sealed under another key',
  ESPOOL_TRANSITION: 'a mail was to move between queue states in a way the spool does not declare (a bug)',
  // --- policy inspection (M1–M6) ---
  EPDF_SYNTAX: 'a PDF the inspector cannot read',
  EZIP_INVALID: 'a ZIP archive the inspector cannot read',
  EINSPECTION_TIMEOUT: 'the inspection of a mail took longer than its budget',
  EINSPECTION_UNAVAILABLE: 'no inspection worker could check the mail (the box is stopping, or a worker was lost); it is refused for now, 451',
  // --- delivery (M2, M3) ---
  ESMTP_REPLY: 'the receiving server refused, failed or could not be reached',
  // --- starting, the trail, a reset, and the box's own invariants ---
  ESTART_REFUSED: 'the box cannot start as configured: a file, socket, key or certificate is not as it needs',
  EAUDIT_UNREADABLE: 'the audit trail cannot be read or exported as asked',
  ERESET_INCOMPLETE: 'a factory reset could not prove the token empty; nothing more was deleted',
  EINTERNAL: 'the code reached a state it does not allow (a bug); the operation was stopped',
} as const

export type BoxErrorCode = keyof typeof BOX_ERRORS

/** An error of the box with its code (`err.code`), as every error class of the firmware is. */
export interface CodedError extends Error {
  readonly code: BoxErrorCode
}

/**
 * An error class for `code`, named `name` (fastify's createError): `message` defaults to the
 * table's text. A class that needs more fields extends the one made here.
 */
export function createError<C extends BoxErrorCode>(code: C, name: string) {
  return codedError(code, name, BOX_ERRORS[code])
}

/**
 * A one-off error with its code, for the places that need no class of their own (a refused
 * start, a bug caught by an invariant): `throw boxError('ESTART_REFUSED', 'why')`, named
 * `BoxError[ESTART_REFUSED]`.
 */
export function boxError(code: BoxErrorCode, message?: string, options?: ErrorOptions): CodedError {
  return oneOff(code, 'BoxError', BOX_ERRORS[code], message, options)
}
