import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { pdfEncryption } from '../../../../firmware/policy/pdf.ts'
import { readZip } from '../../../../firmware/policy/zip.ts'
import { ACCOUNT, tempDir } from '../../../helpers/box.ts'
import { parseConfig } from '../../../../firmware/config/load.ts'
import { LABEL, policyRig as rig, statement, subject } from '../../../helpers/policy.ts'
import { pdfFixtures, zipFixture } from '../../../helpers/pdf.ts'

t.test('M13: PDFs made by qpdf — every encrypted variant passes, every unencrypted one is found', async (t) => {
  const pdfs = await pdfFixtures(tempDir(t))
  for (const [name, bytes] of Object.entries(pdfs)) {
    t.equal(pdfEncryption(bytes).verdict, name.startsWith('plain') ? 'unencrypted' : 'encrypted', name)
  }
  t.equal(pdfEncryption(Buffer.from('not a pdf')).verdict, 'not-a-pdf')
})

t.test('M13 over SMTP: an unencrypted PDF is refused with the exact code, an encrypted one accepted', async (t) => {
  const pdfs = await pdfFixtures(tempDir(t))
  const { send, box, events } = await rig(t, {})
  const bad = await send(statement({ attachments: [{ name: 'statement.pdf', type: 'application/pdf', content: pdfs['plain-xref-streams']! }] }))
  t.equal(bad.code, 550)
  t.equal(bad.text, '5.7.1 EPOLICY_PDF_UNENCRYPTED attachment "statement.pdf" is not encrypted')
  const incremental = await send(statement({ attachments: [{ name: 's.pdf', type: 'application/pdf', content: pdfs['plain-incremental']! }] }))
  t.equal(incremental.code, 550, 'an incremental update does not hide an unencrypted PDF')
  const good = await send(statement({ attachments: [{ name: 'statement.pdf', type: 'application/pdf', content: pdfs['aes-256-incremental']! }] }))
  t.equal(good.code, 250)
  t.equal(box.handoff.mails.length, 1)
  t.ok(events.some((e) => e.type === 'policy.decision' && e.rule === 'pdf-encryption' && e.outcome === 'refused'))
  t.ok(events.some((e) => e.type === 'policy.accepted'))
})

t.test('M12: the monthly statement subject label, decoded from UTF-8 or Big5; class from header or profile', async (t) => {
  const { send } = await rig(t, { statementClass: 'monthly', attachmentTypes: [] })
  const missing = await send(statement({ subject: subject('11月對帳單') }))
  t.equal(missing.code, 550)
  t.equal(missing.text, `5.7.1 EPOLICY_SUBJECT a monthly statement's subject must contain the label set in policy profile "securities"`)
  t.equal((await send(statement())).code, 250, 'UTF-8 subject with the label')
  const big5 = Buffer.from('a6b3bbf9c3d2a8e9a4ebb9efb162b3e6', 'hex').toString('base64')
  t.equal((await send(statement({ subject: `=?big5?B?${big5}?=` }))).code, 250, 'Big5 subject with the label')
  t.equal((await send(statement({ subject: subject('Daily notice'), cls: 'daily' }))).code, 250, 'another class needs no label')
})

t.test('M12: unmasked national ID refused (subject or body, text or HTML); masked and invalid ones pass; patterns', async (t) => {
  const { send } = await rig(t, { attachmentTypes: [], patterns: ['\\b\\d{3}-\\d{2}-\\d{6}-\\d\\b'] })
  const body = await send(statement({ body: '客戶 A123456789 您好' }))
  t.equal(body.code, 550)
  t.equal(body.text, '5.7.1 EPOLICY_UNMASKED_ID the message contains an unmasked national ID (A12****789)')
  t.equal((await send(statement({ subject: subject(`${LABEL} A123456789`) }))).code, 550, 'in the subject')
  t.equal((await send(statement({ body: '客戶 A12****789 您好，發票 A123456788' }))).code, 250, 'masked, and a checksum-invalid number')
  t.equal((await send(statement({ body: '帳號 123-45-678901-2' }))).code, 550, 'configured pattern (full account number)')
})

t.test('sender alignment, recipients, consent, attachment types, ZIPs', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'consent.csv'), 'address,name\ncustomer@example.net,x\n"other@example.net",y\n')
  const z = { enc: await zipFixture(dir, true), plain: await zipFixture(dir, false) }
  t.match(readZip(z.enc), { ok: true, entries: [{ name: 'statement.pdf', encrypted: true }] })
  const { send } = await rig(t, { consentFile: join(dir, 'consent.csv') })
  const spoof = await send(statement({ from: 'ceo@other-bank.example' }))
  t.equal(spoof.text, '5.7.1 EPOLICY_SENDER From <ceo@other-bank.example> is not an allowed sender')
  t.equal((await send(statement(), ['customer@example.net'], 'bounce@evil.example')).code, 550, 'MAIL FROM outside the allowed senders')
  const two = await send(statement(), ['customer@example.net', 'other@example.net'])
  t.equal(two.text, '5.5.3 EPOLICY_RECIPIENTS 2 recipients; a statement goes to at most 1')
  const noConsent = await send(statement(), ['stranger@example.net'])
  t.equal(noConsent.text, '5.7.1 EPOLICY_NO_CONSENT a recipient has no e-statement consent on file')
  const exe = await send(statement({ attachments: [{ name: 'run.exe', type: 'application/octet-stream', content: Buffer.from('MZ') }] }))
  t.equal(exe.text, '5.7.1 EPOLICY_ATTACHMENT_TYPE attachment "run.exe" of type application/octet-stream is not allowed')
  t.equal(
    (await send(statement({ attachments: [{ name: 'a.zip', type: 'application/zip', content: z.plain }] }))).text,
    '5.7.1 EPOLICY_ZIP_UNENCRYPTED attachment "a.zip" has unencrypted entries',
  )
  t.equal((await send(statement({ attachments: [{ name: 'a.zip', type: 'application/zip', content: z.enc }] }))).code, 250)
})

t.test('M1: a new consent export is picked up without a restart, once it has stopped changing; an empty or missing one keeps the list in force', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'consent.csv')
  writeFileSync(file, 'customer@example.net\n')
  const { send, policy, events } = await rig(t, { consentFile: file })
  const consentEvents = () => events.filter((e) => e.type === 'policy.consent_list')
  t.match(
    consentEvents(),
    [{ profile: 'securities', addresses: 1, outcome: 'loaded', sha256: /^[0-9a-f]{64}$/ }],
    'the list in force at start is audited (count and file hash, no addresses)',
  )
  t.equal((await send(statement(), ['newcomer@example.net'])).code, 550)

  writeFileSync(file, 'customer@example.net\nnewcomer@example.net\n')
  await policy.checkConsentFiles()
  t.equal((await send(statement(), ['newcomer@example.net'])).code, 550, 'a file that just changed may still be being written: not read yet')
  await policy.checkConsentFiles()
  t.equal((await send(statement(), ['newcomer@example.net'])).code, 250, 'unchanged at the next check: in force')
  t.match(consentEvents().at(-1), { addresses: 2, outcome: 'loaded' })

  writeFileSync(file, 'address,name\n') // a failed export: header only
  await policy.checkConsentFiles()
  await policy.checkConsentFiles()
  t.match(consentEvents().at(-1), { addresses: 2, outcome: 'kept-previous', reason: /lists no address/ })
  t.equal((await send(statement(), ['newcomer@example.net'])).code, 250, 'the previous list stays in force')

  rmSync(file)
  await policy.checkConsentFiles()
  await policy.checkConsentFiles()
  t.match(consentEvents().at(-1), { outcome: 'kept-previous', reason: /cannot read .*ENOENT/ })
  t.equal((await send(statement(), ['customer@example.net'])).code, 250)
  t.notMatch(JSON.stringify(consentEvents()), /@/, 'no address in the events')
})

t.test('monitor mode accepts, records the hit and counts it; malformed MIME is refused cleanly', async (t) => {
  const pdfs = await pdfFixtures(tempDir(t))
  const { send, policy, events, box } = await rig(t, { pdfEncryption: 'monitor', deidentify: 'monitor' })
  const r = await send(statement({ body: 'A123456789', attachments: [{ name: 's.pdf', type: 'application/pdf', content: pdfs.plain! }] }))
  t.equal(r.code, 250)
  t.same(
    events.filter((e) => e.type === 'policy.decision').map((e) => (e as { rule: string; outcome: string }).outcome),
    ['monitor-hit', 'monitor-hit'],
  )
  t.same(policy.counters.get('pdf-encryption'), { refused: 0, monitored: 1 })
  const broken = await send(
    'From: statements@bank.example\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary="never"\r\n\r\n--never\r\nContent-Type: text/plain\r\n\r\nno end\r\n',
  )
  t.equal(broken.code, 550)
  t.match(broken.text, /^5\.6\.0 EMESSAGE_MALFORMED multipart body with boundary "never" is not terminated/)
  t.equal(box.handoff.mails.length, 1)
})

t.test('a mail no profile selects is not checked', async (t) => {
  const { send } = await rig(t, { accounts: ['someone-else'], domains: ['elsewhere.example'] })
  t.equal((await send(statement({ body: 'A123456789' }))).code, 250)
})

t.test('S6: statement id and class reach the audit events with or without a matching profile', async (t) => {
  const withProfile = await rig(t, { attachmentTypes: [] })
  const tagged = statement({}).replace('MIME-Version', 'X-Statement-ID: S-2026-11-000123\r\nX-Statement-Class: Monthly\r\nMIME-Version')
  t.equal((await withProfile.send(tagged)).code, 250)
  t.match(
    withProfile.events.find((e) => e.type === 'policy.accepted'),
    { profile: 'securities', statementId: 'S-2026-11-000123', statementClass: 'monthly' },
  )

  const noProfile = await rig(t, { accounts: [], domains: ['other.example'], attachmentTypes: [] })
  t.equal((await noProfile.send(tagged)).code, 250)
  t.match(
    noProfile.events.find((e) => e.type === 'policy.accepted'),
    { profile: '', statementId: 'S-2026-11-000123', statementClass: 'monthly' },
  )
})

t.test('S7: a new policy takes effect without a restart; one that cannot be read leaves the old in force', async (t) => {
  const pdfs = await pdfFixtures(tempDir(t))
  const { send, policy } = await rig(t, { pdfEncryption: 'monitor' })
  const mail = statement({ attachments: [{ name: 'statement.pdf', type: 'application/pdf', content: pdfs['plain-xref-streams']! }] })
  t.equal((await send(mail)).code, 250, 'monitor: accepted')
  const profile = { name: 'securities', accounts: [ACCOUNT.name], domains: ['bank.example'] }
  await policy.reconfigure(parseConfig({ dataDir: tempDir(t), policy: { profiles: [{ ...profile, pdfEncryption: 'enforce' }] } }))
  const refused = await send(mail)
  t.equal(refused.code, 550, 'the same mail, refused by the new rule')
  t.match(refused.text, /EPOLICY_PDF_UNENCRYPTED/)
  const missing = parseConfig({ dataDir: tempDir(t), policy: { profiles: [{ ...profile, pdfEncryption: 'off', consentFile: '/nonexistent/consent.csv' }] } })
  await t.rejects(policy.reconfigure(missing), /ENOENT/)
  t.equal((await send(mail)).code, 550, 'the policy in force stays')
})
