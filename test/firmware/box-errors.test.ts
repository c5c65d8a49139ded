import { readFileSync } from 'node:fs'
import t from 'tap'
import { AccountError } from '../../firmware/admin/account-records.ts'
import { BOX_ERRORS, boxError, createError } from '../../firmware/box-errors.ts'
import { ConfigError } from '../../firmware/config/load.ts'
import { ProposalError } from '../../firmware/config/proposal-files.ts'
import { ConfigTamperError } from '../../firmware/config/versions.ts'
import { BackupError } from '../../firmware/control/backup.ts'
import { Refused } from '../../firmware/control/server.ts'
import { SmtpError } from '../../firmware/delivery/client.ts'
import { PdfSyntaxError } from '../../firmware/policy/pdf-syntax.ts'
import { InspectionTimeout, InspectionUnavailable } from '../../firmware/policy/pool.ts'
import { readZip } from '../../firmware/policy/zip.ts'
import { RecordError } from '../../firmware/spool/record.ts'
import { BundleError } from '../../firmware/update/bundle.ts'
import { UpdateError } from '../../firmware/update/slots.ts'
import { AnswerError } from '../../provisioning/answers.ts'
import { HAL_ERRORS, halError } from '../../hal/errors.ts'
import { sourceFiles } from '../architecture/imports.ts'

// #34: the codes outside SMTP. Operators and tools match on them: add rows, never edit one.
const PINNED = [
  'ECONFIG_INVALID',
  'ECONFIG_TAMPERED',
  'EPROPOSAL_REFUSED',
  'EACCOUNT_REFUSED',
  'ECONTROL_REFUSED',
  'EANSWERS_INVALID',
  'EBACKUP_INVALID',
  'EBUNDLE_INVALID',
  'EUPDATE_REFUSED',
  'ERECORD_INVALID',
  'ESPOOL_TRANSITION',
  'EPDF_SYNTAX',
  'EZIP_INVALID',
  'EINSPECTION_TIMEOUT',
  'EINSPECTION_UNAVAILABLE',
  'ESMTP_REPLY',
  'ESTART_REFUSED',
  'EAUDIT_UNREADABLE',
  'ERESET_INCOMPLETE',
  'EINTERNAL',
]

t.test('the table is the pinned one, row by row, each with a text an operator can act on', async (t) => {
  t.same(Object.keys(BOX_ERRORS), PINNED)
  for (const [code, text] of Object.entries(BOX_ERRORS)) {
    t.match(code, /^E[A-Z0-9_]+$/)
    t.ok(text.length > 15, `${code} says what happened`)
  }
})

t.test('every error class of the firmware carries its code, and is still the Error it was', async (t) => {
  const made = [
    [new ConfigError('delivery.smtpPort', 'not a port'), 'ECONFIG_INVALID', 'ConfigError'],
    [new ConfigTamperError('v3.json', 'has a wrong MAC'), 'ECONFIG_TAMPERED', 'ConfigTamperError'],
    [new ProposalError('stale'), 'EPROPOSAL_REFUSED', 'ProposalError'],
    [new AccountError('no such user'), 'EACCOUNT_REFUSED', 'AccountError'],
    [new Refused('unknown id'), 'ECONTROL_REFUSED', 'Refused'],
    [new AnswerError('hostname: no answer given'), 'EANSWERS_INVALID', 'AnswerError'],
    [new BackupError('wrong passphrase'), 'EBACKUP_INVALID', 'BackupError'],
    [new BundleError('bad signature'), 'EBUNDLE_INVALID', 'BundleError'],
    [new UpdateError('no version on trial'), 'EUPDATE_REFUSED', 'UpdateError'],
    [new RecordError('authentication failed'), 'ERECORD_INVALID', 'RecordError'],
    [new PdfSyntaxError('unbalanced dictionary'), 'EPDF_SYNTAX', 'PdfSyntaxError'],
    [new InspectionTimeout(), 'EINSPECTION_TIMEOUT', 'InspectionTimeout'],
    [new InspectionUnavailable('the box is stopping'), 'EINSPECTION_UNAVAILABLE', 'InspectionUnavailable'],
    [new SmtpError('RCPT', '550 5.1.1 no such user'), 'ESMTP_REPLY', 'SmtpError'],
  ] as const
  for (const [err, code, name] of made) {
    t.ok(err instanceof Error, `${name} is an Error`)
    t.equal(err.code, code, name)
    t.equal(err.name, name)
  }
  t.equal(new InspectionTimeout().message, BOX_ERRORS.EINSPECTION_TIMEOUT, "the table's text when none is given")
  const cause = new Error('inner')
  t.equal(new (createError('ESMTP_REPLY', 'X'))('outer', { cause }).cause, cause, 'a cause is kept')
  t.match(readZip(Buffer.from('PK\x05\x06')), { ok: false }, "the ZIP reader's own refusal stays an answer, not a throw")
})

t.test('no error class in firmware/ or provisioning/ without a code (createError, or a table of its own)', async (t) => {
  const root = new URL('../../', import.meta.url).pathname
  const uncoded: string[] = []
  for (const file of sourceFiles(root, ['firmware', 'provisioning'])) {
    const text = readFileSync(`${root}${file}`, 'utf8')
    for (const m of text.matchAll(/class (\w+) extends Error \{([\s\S]*?)\n\}/g)) if (!/readonly code\b/.test(m[2]!)) uncoded.push(`${file}: ${m[1]}`)
  }
  t.same(uncoded, [])
})

t.test('a one-off error has its code, and no bare Error is thrown in firmware/, hal/, image/ or provisioning/', async (t) => {
  const e = boxError('ESTART_REFUSED', 'admin.tls.certFile and admin.tls.keyFile must be set together')
  t.match(e, { code: 'ESTART_REFUSED', name: 'BoxError[ESTART_REFUSED]', message: /must be set together/ })
  t.ok(e instanceof Error)
  t.equal(boxError('EINTERNAL').message, BOX_ERRORS.EINTERNAL)
  t.equal(Object.getPrototypeOf(boxError('EINTERNAL')), Object.getPrototypeOf(boxError('EINTERNAL')), 'one class per code')
  const root = new URL('../../', import.meta.url).pathname
  t.match(halError('ENET_INVALID', '"eth 0" is not a network device name'), { code: 'ENET_INVALID', name: 'HalError[ENET_INVALID]' })
  t.same(
    Object.keys(HAL_ERRORS),
    ['EDER_INVALID', 'ENAME_INVALID', 'ENET_INVALID', 'EFIREWALL_INVALID', 'ESOCKET_CLOSED', 'EBUILD_REFUSED'],
    "hal's table, pinned",
  )
  const bare = sourceFiles(root, ['firmware', 'hal', 'image', 'provisioning']).filter((f) => /throw new Error\(/.test(readFileSync(`${root}${f}`, 'utf8')))
  t.same(bare, [], 'every throw names its code')
})
