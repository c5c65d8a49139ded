import t from 'tap'
import { ERRORS, GatewayError, toGatewayError } from '../../firmware/errors.ts'

// The firm's systems match on these codes: changing one is a breaking change.
// Add new rows here when adding codes; never edit an existing row.
const PINNED = {
  ECLIENT_NOT_ALLOWED: [554, '5.7.1'],
  ECLIENT_TOO_MANY: [421, '4.7.0'],
  ETLS_REQUIRED: [530, '5.7.0'],
  ESHUTTING_DOWN: [421, '4.3.2'],
  EAUTH_REQUIRED: [530, '5.7.0'],
  EAUTH_FAILED: [535, '5.7.8'],
  EAUTH_RATE_LIMITED: [454, '4.7.0'],
  EAUTH_TIMEOUT: [421, '4.7.0'],
  EAUTH_BUSY: [454, '4.7.0'],
  ESIZE_LIMIT: [552, '5.3.4'],
  EDATA_BARE_NEWLINE: [550, '5.5.2'],
  EDATA_NUL: [550, '5.6.0'],
  EMESSAGE_NO_FROM: [550, '5.6.0'],
  EMESSAGE_MALFORMED: [550, '5.6.0'],
  EMESSAGE_AMBIGUOUS: [550, '5.6.0'],
  EMESSAGE_LINE_TOO_LONG: [550, '5.6.0'],
  EPOLICY_SENDER: [550, '5.7.1'],
  EPOLICY_SUBJECT: [550, '5.7.1'],
  EPOLICY_PDF_UNENCRYPTED: [550, '5.7.1'],
  EPOLICY_PDF_UNREADABLE: [550, '5.7.1'],
  EPOLICY_PDF_MISSING: [550, '5.7.1'],
  EPOLICY_ATTACHMENT_TYPE: [550, '5.7.1'],
  EPOLICY_ZIP_UNENCRYPTED: [550, '5.7.1'],
  EPOLICY_ZIP_MALFORMED: [550, '5.7.1'],
  EPOLICY_UNMASKED_ID: [550, '5.7.1'],
  EPOLICY_RECIPIENTS: [550, '5.5.3'],
  EPOLICY_NO_CONSENT: [550, '5.7.1'],
  ESIGN_NO_CERT: [550, '5.7.1'],
  ESIGN_CERT_EXPIRED: [550, '5.7.1'],
  ESIGN_CERT_MISMATCH: [550, '5.7.1'],
  ESIGN_CERT_USAGE: [550, '5.7.1'],
  EENCRYPT_RECIPIENT_CERT: [550, '5.7.1'],
  EHSM_UNAVAILABLE: [451, '4.3.0'],
  EHSM_BUSY: [451, '4.3.0'],
  EQUEUE_DISK_FULL: [452, '4.3.1'],
  EQUEUE_FULL: [452, '4.3.1'],
  EAUDIT_BACKLOG: [452, '4.3.1'],
  ESUBMISSION_BUSY: [452, '4.3.1'],
  ETEMPORARY: [451, '4.3.0'],
}

t.test('the error table is pinned', async (t) => {
  const actual = Object.fromEntries(Object.entries(ERRORS).map(([code, s]) => [code, [s.smtp, s.enhanced]]))
  t.same(actual, PINNED)
})

t.test('every code is consistent: enhanced class matches the reply class (RFC 3463 §3.1)', async (t) => {
  for (const [code, spec] of Object.entries(ERRORS)) {
    t.equal(spec.enhanced[0], String(spec.smtp)[0], code)
    t.match(spec.enhanced, /^[245]\.\d{1,3}\.\d{1,3}$/, code)
    t.ok(spec.text.length > 10, `${code} has a reason in words`)
  }
})

t.test('GatewayError carries what smtp-server needs and leads its text with the codes', async (t) => {
  const e = new GatewayError('ESIZE_LIMIT', 'message is 31 MB, limit 30 MB')
  t.equal(e.responseCode, 552)
  t.equal(e.message, '5.3.4 ESIZE_LIMIT message is 31 MB, limit 30 MB')
  t.equal(e.temporary, false)
  t.equal(new GatewayError('ESHUTTING_DOWN').temporary, true)
})

t.test('unmapped failures become a temporary failure, never a 5xx', async (t) => {
  const e = toGatewayError(new Error('disk on fire'))
  t.equal(e.code, 'ETEMPORARY')
  t.equal(e.responseCode, 451)
  t.equal((e.cause as Error).message, 'disk on fire')
  const same = new GatewayError('EAUTH_FAILED')
  t.equal(toGatewayError(same), same)
})
