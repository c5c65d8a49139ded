/**
 * One table of stable error codes (STYLE: "errors have names").
 *
 * Each code carries the SMTP reply code and the RFC 3463 enhanced status the
 * submission server answers with. Codes are part of the box's interface with
 * the firm's systems: they are pinned by test/firmware/errors.test.ts and are
 * never renumbered, only added.
 */

export interface ErrorSpec {
  /** SMTP reply code (RFC 5321 §4.2). */
  readonly smtp: number
  /** Enhanced mail system status code (RFC 3463). */
  readonly enhanced: string
  /** Default reason, in plain words, for the reply and the log. */
  readonly text: string
}

export const ERRORS = {
  // --- connection and transport (S1, S8) ---
  ECLIENT_NOT_ALLOWED: { smtp: 554, enhanced: '5.7.1', text: 'client address is not allowed to submit' },
  ECLIENT_TOO_MANY: { smtp: 421, enhanced: '4.7.0', text: 'too many connections from your address, try again later' },
  ETLS_REQUIRED: { smtp: 530, enhanced: '5.7.0', text: 'must issue a STARTTLS command first' },
  ESHUTTING_DOWN: { smtp: 421, enhanced: '4.3.2', text: 'service shutting down, try again later' },

  // --- authentication (M1, S3) ---
  EAUTH_REQUIRED: { smtp: 530, enhanced: '5.7.0', text: 'authentication required' },
  EAUTH_FAILED: { smtp: 535, enhanced: '5.7.8', text: 'authentication credentials invalid' },
  EAUTH_RATE_LIMITED: { smtp: 454, enhanced: '4.7.0', text: 'too many failed authentication attempts, try again later' },
  EAUTH_TIMEOUT: { smtp: 421, enhanced: '4.7.0', text: 'not authenticated in time; closing connection' },
  EAUTH_BUSY: { smtp: 454, enhanced: '4.7.0', text: 'too many password checks waiting, try again shortly' },

  // --- message content ---
  ESIZE_LIMIT: { smtp: 552, enhanced: '5.3.4', text: 'message exceeds the maximum size' },
  EDATA_BARE_NEWLINE: { smtp: 550, enhanced: '5.5.2', text: 'message contains a bare CR or LF; lines must end with CRLF' },
  EDATA_NUL: { smtp: 550, enhanced: '5.6.0', text: 'message contains a NUL byte' },

  EMESSAGE_NO_FROM: { smtp: 550, enhanced: '5.6.0', text: 'the message has no usable From address' },

  EMESSAGE_MALFORMED: { smtp: 550, enhanced: '5.6.0', text: 'the message structure is malformed' },
  EMESSAGE_AMBIGUOUS: { smtp: 550, enhanced: '5.6.0', text: 'the message structure can be read in more than one way' },
  EMESSAGE_LINE_TOO_LONG: { smtp: 550, enhanced: '5.6.0', text: 'a header line is longer than 998 octets (RFC 5322 section 2.1.1)' },

  // --- statement policy (M1, M12, M13) ---
  EPOLICY_SENDER: { smtp: 550, enhanced: '5.7.1', text: 'sender address is not allowed for this account' },
  EPOLICY_SUBJECT: { smtp: 550, enhanced: '5.7.1', text: 'the subject lacks the label required for this statement class' },
  EPOLICY_PDF_UNENCRYPTED: { smtp: 550, enhanced: '5.7.1', text: 'a PDF attachment is not encrypted' },
  EPOLICY_PDF_UNREADABLE: { smtp: 550, enhanced: '5.7.1', text: 'a PDF attachment cannot be read, so its encryption cannot be checked' },
  EPOLICY_PDF_MISSING: { smtp: 550, enhanced: '5.7.1', text: 'the statement has no PDF attachment' },
  EPOLICY_ATTACHMENT_TYPE: { smtp: 550, enhanced: '5.7.1', text: 'an attachment type is not allowed' },
  EPOLICY_ZIP_UNENCRYPTED: { smtp: 550, enhanced: '5.7.1', text: 'a ZIP attachment has unencrypted entries' },
  EPOLICY_ZIP_MALFORMED: { smtp: 550, enhanced: '5.7.1', text: 'a ZIP attachment is not an archive every reader reads alike' },
  EPOLICY_UNMASKED_ID: { smtp: 550, enhanced: '5.7.1', text: 'the message contains an unmasked personal identifier' },
  EPOLICY_RECIPIENTS: { smtp: 550, enhanced: '5.5.3', text: 'too many recipients for a statement' },
  EPOLICY_NO_CONSENT: { smtp: 550, enhanced: '5.7.1', text: 'the recipient has no e-statement consent on file' },

  // --- signing (M4, M5, M6) ---
  ESIGN_NO_CERT: { smtp: 550, enhanced: '5.7.1', text: 'signing is required for this sender but no signing certificate is installed' },
  ESIGN_CERT_EXPIRED: { smtp: 550, enhanced: '5.7.1', text: 'the signing certificate for this sender is expired or not yet valid' },
  ESIGN_CERT_MISMATCH: { smtp: 550, enhanced: '5.7.1', text: 'the signing certificate does not name this sender address or domain' },
  ESIGN_CERT_USAGE: { smtp: 550, enhanced: '5.7.1', text: 'the signing certificate is not for e-mail signatures (key usage / extended key usage)' },
  EENCRYPT_RECIPIENT_CERT: { smtp: 550, enhanced: '5.7.1', text: 'encryption is configured for some recipients but not for all of this mail' },
  EHSM_UNAVAILABLE: { smtp: 451, enhanced: '4.3.0', text: 'the HSM is unavailable; the mail was not signed and not accepted, try again later' },
  // #38: a token that answers but refuses work for now (throttled, CKR_DEVICE_ERROR; or no session free).
  EHSM_BUSY: { smtp: 451, enhanced: '4.3.0', text: 'the HSM is busy and refused to sign for now; the mail was not accepted, try again shortly' },

  // --- spool (S12) ---
  EQUEUE_DISK_FULL: { smtp: 452, enhanced: '4.3.1', text: 'insufficient system storage: the spool keeps its disk reserve, try again later' },
  EQUEUE_FULL: { smtp: 452, enhanced: '4.3.1', text: 'the queue is full, try again later' },
  EAUDIT_BACKLOG: { smtp: 452, enhanced: '4.3.1', text: 'the audit trail cannot record more right now (disk full?); try again later' },
  ESUBMISSION_BUSY: { smtp: 452, enhanced: '4.3.1', text: 'the box is receiving as much as its memory budget allows, try again shortly' },

  // --- anything unmapped: tempfail, never a silent loss (STYLE: Haraka, smtp-server) ---
  ETEMPORARY: { smtp: 451, enhanced: '4.3.0', text: 'temporary local problem, try again later' },
} as const satisfies Record<string, ErrorSpec>

export type ErrorCode = keyof typeof ERRORS

/**
 * An error with a stable code. `responseCode` is the property smtp-server reads
 * to pick the reply code; the enhanced status and code lead the reply text so a
 * firm's system can match on them: `550 5.5.2 EDATA_BARE_NEWLINE message ...`.
 */
export class GatewayError extends Error {
  readonly code: ErrorCode
  readonly responseCode: number
  readonly enhanced: string
  readonly reason: string

  constructor(code: ErrorCode, reason?: string, options?: { cause?: unknown }) {
    const spec: ErrorSpec = ERRORS[code]
    const text = reason ?? spec.text
    super(`${spec.enhanced} ${code} ${text}`, options)
    this.name = 'GatewayError'
    this.code = code
    this.responseCode = spec.smtp
    this.enhanced = spec.enhanced
    this.reason = text
  }

  /** True for 4xx: the client should retry later. */
  get temporary(): boolean {
    return this.responseCode < 500
  }
}

/**
 * Turns anything thrown during a transaction into a GatewayError. Unknown
 * failures become ETEMPORARY (4xx): the firm's system retries, nothing is lost.
 */
export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err
  return new GatewayError('ETEMPORARY', undefined, { cause: err })
}
