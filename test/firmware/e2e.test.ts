import t from 'tap'
import { parseConfig } from '../../firmware/config/load.ts'
import { AuditCopyHandoff } from '../../firmware/delivery/audit-copy.ts'
import { DeliveryEngine } from '../../firmware/delivery/engine.ts'
import type { BoxEvent } from '../../firmware/events.ts'
import { PolicyStage } from '../../firmware/pipeline/stages/policy.ts'
import { StagedHandoff } from '../../firmware/pipeline/stage.ts'
import { Spool } from '../../firmware/spool/spool.ts'
import { SubmissionServer } from '../../firmware/submission/server.ts'
import { ACCOUNT, testConfig, tempDir } from '../helpers/box.ts'
import { logSink } from '../helpers/logs.ts'
import { startReceiver, until } from '../helpers/receiver.ts'
import { mailauthDkimVerify, opensslVerify, pythonDkimVerify, signingSetup } from '../helpers/signing.ts'
import { pdfFixtures } from '../helpers/pdf.ts'
import { randomBytes } from 'node:crypto'
import { readFileSync, readdirSync } from 'node:fs'
import { CHECKPOINT_KEY_LABEL } from '../../firmware/keys/labels.ts'
import { recipientHash } from '../../firmware/audit/redact.ts'
import { AuditTrail } from '../../firmware/audit/trail.ts'
import { verifyTrail } from '../../firmware/audit/verify.ts'
import { EventHub } from '../../firmware/events.ts'
import { BOX_KEYS } from '../../firmware/keys/manifest.ts'
import { trailText } from '../helpers/audit.ts'

const CANARY = `canary-${randomBytes(12).toString('hex')}`
import { join } from 'node:path'

t.test('end to end: nodemailer → submission → policy → signing (HSM) → encrypted spool → delivery; the MX verifies S/MIME and DKIM', async (t) => {
  const events: BoxEvent[] = []
  const sink = new EventHub([{ emit: (e: BoxEvent) => void events.push(e) }])
  const s = await signingSetup(t, { events: sink })
  await s.hsm.ensureKeys(BOX_KEYS)
  const rx = await startReceiver(t)
  const archive = await startReceiver(t, { host: '127.0.0.5' })
  const base = await testConfig(t)
  const config = parseConfig({
    dataDir: tempDir(t),
    submission: { starttlsPort: 0, implicitTlsPort: 0, accounts: base.submission.accounts },
    policy: { profiles: [{ name: 'securities', accounts: [ACCOUNT.name], domains: ['bank.example'], attachmentTypes: [] }] },
    spool: { verifyOnStart: false },
    delivery: {
      routes: [{ domain: 'example.net', host: '127.0.0.1', port: rx.port }],
      auditCopy: { address: 'archive@bank.example', host: '127.0.0.5', port: archive.port },
    },
  })
  const { log } = logSink()
  const clock = { now: () => Date.now() }
  const audit = new AuditTrail({ config, log, hsm: s.hsm, clock })
  sink.add(audit)
  await audit.start()
  const spool = new Spool({ config, log, hsm: s.hsm, events: sink, clock })
  const policy = new PolicyStage({ config, log, events: sink })
  const delivery = new DeliveryEngine({ config, log, spool, events: sink, clock })
  const submission = new SubmissionServer({
    config,
    log,
    handoff: new StagedHandoff([policy, s.stage], new AuditCopyHandoff(spool, config)),
    clock,
    events: sink,
  })
  for (const c of [spool, policy, delivery, submission]) await c.start()
  t.teardown(async () => {
    for (const c of [submission, policy, delivery, spool, audit]) await c.stop()
  })

  const nodemailer = await import('nodemailer')
  const ca = readFileSync(join(config.dataDir, 'tls', 'submission.crt'))
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port: submission.endpoints.starttls.port,
    requireTLS: true,
    auth: { user: ACCOUNT.name, pass: ACCOUNT.password },
    tls: { ca, servername: 'localhost' },
  })
  const pdf = (await pdfFixtures(tempDir(t)))['aes-256']!
  const raw = Buffer.from(
    'From: "Bank Statements" <statements@bank.example>\r\nTo: customer@example.net\r\n' +
      `Subject: =?UTF-8?B?${Buffer.from('2026年11月有價證券月對帳單').toString('base64')}?=\r\nMessage-ID: <e2e@bank.example>\r\nMIME-Version: 1.0\r\n` +
      'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n' +
      `${Buffer.from('客戶 A12****789 您好，對帳單如附件。').toString('base64')}\r\n--b\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n${CANARY}\r\n--b\r\nContent-Type: application/pdf; name="statement.pdf"\r\n` +
      `Content-Disposition: attachment; filename="statement.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n${pdf.toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n--b--\r\n`,
  )
  const info = await transport.sendMail({ envelope: { from: 'statements@bank.example', to: ['customer@example.net'] }, raw })
  transport.close()
  t.match(info.response, /^250 2\.0\.0 Ok: queued as/)

  await until(() => rx.received.length === 1 && archive.received.length === 1)
  const got = rx.received[0]!.data
  t.ok((await opensslVerify(s.dir, s.ca.cert, got)).ok, 'S/MIME verifies at the receiving MX')
  const record = await s.dkimRecord()
  t.equal(await pythonDkimVerify(got, record), true, 'DKIM (python3-dkim)')
  t.same(await mailauthDkimVerify(got, record), ['pass'], 'DKIM (mailauth)')
  t.same(archive.received[0]!.data, got, 'the archive copy is byte-identical')
  await until(() => spool.size === 0)
  const id = /queued as (\S+)/.exec(info.response)![1]!
  t.same(
    events.filter((e) => 'id' in e && e.id === id).map((e) => e.type),
    ['policy.accepted', 'signing.signed', 'spool.queued', 'submission.accepted', 'delivery.attempt', 'spool.final', 'spool.record_shredded'],
    'the event sequence of one statement',
  )

  // S6: the audit trail has the same story, verifiable, with no content and no clear recipient.
  await audit.flush()
  await audit.checkpoint()
  const trail = trailText(audit.dir)
  const story = trail
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => r.id === id)
  t.same(
    story.map((r) => r.type),
    ['policy.accepted', 'signing.signed', 'spool.queued', 'submission.accepted', 'delivery.attempt', 'spool.final', 'spool.record_shredded'],
  )
  t.match(
    story.find((r) => r.type === 'signing.signed'),
    { smime: { serial: s.leaf.serialNumber, algorithm: 'rsa-pkcs1-sha256' }, dkim: ['bank.example/sg1 rsa-sha256'] },
  )
  t.match(
    story.find((r) => r.type === 'delivery.attempt'),
    {
      outcome: 'delivered',
      mx: '127.0.0.1',
      sourceIp: /^127\.0\.0\.1[1-4]$/,
      reply: /^250 /,
      recipients: [{ m: 'c****r@example.net', h: await recipientHash(s.hsm, 'customer@example.net') }],
    },
  )
  for (const secret of [CANARY, 'customer@example.net', '對帳單', ACCOUNT.password]) {
    const files = readdirSync(audit.dir).map((n) => readFileSync(join(audit.dir, n)).toString('latin1'))
    t.notOk(trail.includes(secret) || files.some((f) => f.includes(secret)), `"${secret.slice(0, 12)}…" appears in no audit file`)
  }
  t.ok((await verifyTrail(audit.dir, await s.hsm.keys.publicKey(CHECKPOINT_KEY_LABEL))).ok, 'the trail verifies')
})
