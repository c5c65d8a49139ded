import { randomBytes } from 'node:crypto'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { recipientHash } from '../../firmware/audit/redact.ts'
import { verifyTrail } from '../../firmware/audit/verify.ts'
import { CHECKPOINT_KEY_LABEL, dkimKeyLabel } from '../../firmware/keys/labels.ts'
import { dkimTxtValue } from '../../firmware/signing/dkim.ts'
import { trailText } from '../helpers/audit.ts'
import { ACCOUNT, tempDir } from '../helpers/box.ts'
import { pdfFixtures } from '../helpers/pdf.ts'
import { productBox } from '../helpers/product.ts'
import { startReceiver, until } from '../helpers/receiver.ts'
import { mailauthDkimVerify, opensslVerify, pythonDkimVerify } from '../helpers/signing.ts'

const CANARY = `canary-${randomBytes(12).toString('hex')}`

t.test(
  'end to end, through the box main builds (buildBox): nodemailer → submission → the chain → encrypted spool → delivery; the MX verifies S/MIME and DKIM',
  async (t) => {
    const rx = await startReceiver(t)
    const archive = await startReceiver(t, { host: '127.0.0.5' })
    const {
      box,
      events,
      ca: smimeCa,
    } = await productBox(
      t,
      {
        policy: { profiles: [{ name: 'securities', accounts: [ACCOUNT.name], domains: ['bank.example'], attachmentTypes: [] }] },
        signing: { domains: [{ domain: 'bank.example', smimeKey: 'smime/bank', dkimSelector: 'sg1' }] },
        spool: { verifyOnStart: false },
        delivery: {
          routes: [{ domain: 'example.net', host: '127.0.0.1', port: rx.port }],
          auditCopy: { address: 'archive@bank.example', host: '127.0.0.5', port: archive.port },
        },
      },
      { smime: true },
    )
    const { config, audit, spool, submission } = box
    const hsm = box.hsm.hsm

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
    t.ok((await opensslVerify(tempDir(t), smimeCa!.cert, got)).ok, 'S/MIME verifies at the receiving MX')
    const record = dkimTxtValue(await hsm.keys.publicKey(dkimKeyLabel('bank.example', 'sg1')))
    t.equal(await pythonDkimVerify(got, record), true, 'DKIM (python3-dkim)')
    t.same(await mailauthDkimVerify(got, record), ['pass'], 'DKIM (mailauth)')
    t.same(archive.received[0]!.data, got, 'the archive copy is byte-identical')
    const id = /queued as (\S+)/.exec(info.response)![1]!
    // The queue lets go of the mail before its record is unlinked and the shredding announced (check:fresh on a
    // loaded machine once looked in between): the story is told once the last of it is.
    await until(() => spool.size === 0 && events.some((e) => e.type === 'spool.record_shredded' && 'id' in e && e.id === id))
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
      { smime: { serial: smimeCa!.leaf.serialNumber, algorithm: 'rsa-pkcs1-sha256' }, dkim: ['bank.example/sg1 rsa-sha256'] },
    )
    t.match(
      story.find((r) => r.type === 'delivery.attempt'),
      {
        outcome: 'delivered',
        mx: '127.0.0.1',
        sourceIp: /^127\.0\.0\.1[1-4]$/,
        reply: /^250 /,
        recipients: [{ m: 'c****r@example.net', h: await recipientHash(hsm, 'customer@example.net') }],
      },
    )
    // The mail's own words: "對帳單" and the subject label 有價證券月對帳單 are in the configuration's defaults, which the
    // trail records at the first start (config.changed), as the product box does.
    for (const secret of [CANARY, 'customer@example.net', '對帳單如附件', ACCOUNT.password]) {
      const files = readdirSync(audit.dir).map((n) => readFileSync(join(audit.dir, n)).toString('latin1'))
      t.notOk(trail.includes(secret) || files.some((f) => f.includes(secret)), `"${secret.slice(0, 12)}…" appears in no audit file`)
    }
    t.ok((await verifyTrail(audit.dir, await hsm.keys.publicKey(CHECKPOINT_KEY_LABEL))).ok, 'the trail verifies')
  },
)
