import { execFile } from 'node:child_process'
import { connect as tlsConnect } from 'node:tls'
import { promisify } from 'node:util'
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { makeSelfSignedServerCert } from '../../../hal/crypto/selfsigned.ts'
import { ACCOUNT, accountHash, message, startSubmission, tempDir } from '../../helpers/box.ts'
import { RawSmtp } from '../../helpers/smtp.ts'

const run = promisify(execFile)

/** Opens a STARTTLS session, logs in, and returns the client ready for MAIL FROM. */
async function loggedIn(port: number, tls: object, ehlo?: string): Promise<RawSmtp> {
  const c = await RawSmtp.open(port)
  await c.handshake(tls, ehlo)
  const r = await c.authPlain(ACCOUNT.name, ACCOUNT.password)
  if (r.code !== 235) throw new Error(`AUTH failed: ${r.code} ${r.text}`)
  return c
}

/** The box's Received field (it starts the message) and the message as the client sent it. */
function splitTrace(message: string): [string, string] {
  const end = message.search(/\r\n(?![ \t])/) + 2
  return [message.slice(0, end), message.slice(end)]
}

async function send(c: RawSmtp, data: string | Buffer, rcpt = 'customer@example.net') {
  const mail = await c.cmd('MAIL FROM:<statements@bank.example>')
  const to = await c.cmd(`RCPT TO:<${rcpt}>`)
  const d = await c.cmd('DATA')
  c.write(data)
  return { mail, to, data: d, end: await c.reply() }
}

t.test('S1: TLS 1.1 is refused by the server on both listeners, TLS 1.2 negotiates ECDHE', async (t) => {
  const box = await startSubmission(t)
  for (const port of [box.implicitPort]) {
    // The client is made willing to speak TLS 1.1 (SECLEVEL=0), so a failure is the server's refusal.
    const err = await new Promise<Error & { code?: string }>((resolve) => {
      const s = tlsConnect({ port, host: '127.0.0.1', ...box.tls, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' })
      s.on('secureConnect', () => resolve(Object.assign(new Error('handshake succeeded'), { code: 'NONE' })))
      s.on('error', resolve)
    })
    t.match(err.code, /ALERT_PROTOCOL_VERSION/, 'server answers with a protocol_version alert')
  }
  // STARTTLS listener: the upgrade must be refused the same way.
  const c = await RawSmtp.open(box.starttlsPort)
  await c.reply()
  await c.cmd('EHLO client.test')
  await t.rejects(c.starttls({ ...box.tls, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }), { code: /ALERT_PROTOCOL_VERSION/ })
  c.close()

  const ok = tlsConnect({ port: box.implicitPort, host: '127.0.0.1', ...box.tls, maxVersion: 'TLSv1.2' })
  await new Promise((resolve, reject) => ok.once('secureConnect', resolve).once('error', reject))
  t.equal(ok.getProtocol(), 'TLSv1.2')
  t.match(ok.getCipher().name, /^ECDHE-/, 'key exchange is ECDHE')
  t.match(ok.getCipher().name, /GCM|CHACHA20/, 'an AEAD cipher')
  ok.destroy()
})

t.test('S1: CBC-SHA1 and non-ECDHE suites are refused; openssl s_client agrees', async (t) => {
  const box = await startSubmission(t)
  for (const cipher of ['ECDHE-ECDSA-AES128-SHA', 'AES128-GCM-SHA256', 'DHE-RSA-AES128-GCM-SHA256']) {
    const err = await new Promise<Error & { code?: string }>((resolve) => {
      const s = tlsConnect({ port: box.implicitPort, host: '127.0.0.1', ...box.tls, maxVersion: 'TLSv1.2', ciphers: `${cipher}@SECLEVEL=0` })
      s.on('secureConnect', () => resolve(Object.assign(new Error('handshake succeeded'), { code: 'NONE' })))
      s.on('error', resolve)
    })
    t.match(err.code, /HANDSHAKE_FAILURE|NO_SHARED_CIPHER|NO_CIPHERS/, `${cipher} refused`)
  }
  const s11 = await run('openssl', ['s_client', '-connect', `127.0.0.1:${box.implicitPort}`, '-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0'], {
    timeout: 10_000,
  }).catch((e: { stdout: string; stderr: string }) => e)
  t.match(`${s11.stdout}${s11.stderr}`, /alert protocol version|no protocols available/, 'openssl -tls1_1 fails')
  const s12 = await run('openssl', ['s_client', '-connect', `127.0.0.1:${box.implicitPort}`, '-tls1_2'], { timeout: 10_000 }).catch(
    (e: { stdout: string; stderr: string }) => e,
  )
  t.match(s12.stdout, /Cipher is ECDHE-/, 'openssl -tls1_2 negotiates an ECDHE suite')
})

t.test('M1: AUTH before STARTTLS is refused; wrong password is 535 5.7.8 and logged without the password', async (t) => {
  const box = await startSubmission(t)
  const c = await RawSmtp.open(box.starttlsPort)
  await c.reply()
  const ehlo = await c.cmd('EHLO client.test')
  t.match(ehlo.text, /STARTTLS/)
  t.notMatch(ehlo.text, /AUTH/, '#15 finding 1: AUTH is not offered before TLS (RFC 3207 §4, RFC 4954 §4)')
  const early = await c.authPlain(ACCOUNT.name, ACCOUNT.password)
  t.equal(early.code, 500, 'AUTH in clear text refused, its credentials not looked at')
  t.notOk(
    box.events.some((e) => e.type === 'submission.auth'),
    'no login was attempted',
  )
  const mail = await c.cmd('MAIL FROM:<statements@bank.example>')
  t.equal(mail.code, 530)
  t.match(mail.text, /^5\.7\.0 ETLS_REQUIRED/)
  await c.starttls(box.tls)
  await c.cmd('EHLO client.test')
  const bad = await c.authPlain(ACCOUNT.name, 'wrong password')
  t.equal(bad.code, 535)
  t.match(bad.text, /^5\.7\.8 EAUTH_FAILED/)
  const good = await c.authPlain(ACCOUNT.name, ACCOUNT.password)
  t.equal(good.code, 235)
  c.close()
  const failed = box.records.find((r) => r.msg === 'auth failed')
  t.match(failed, { user: ACCOUNT.name, reason: 'bad-password', ip: '127.0.0.1' })
  t.same(
    box.events.filter((e) => e.type === 'submission.auth'),
    [
      { type: 'submission.auth', account: ACCOUNT.name, clientAddress: '127.0.0.1', outcome: 'failure', reason: 'bad-password' },
      { type: 'submission.auth', account: ACCOUNT.name, clientAddress: '127.0.0.1', outcome: 'success' },
    ],
    'S6: every login, failed or not, is an audit event',
  )
  t.notMatch(box.logText(), /wrong password|correct horse/, 'no password in the log')
})

t.test('M1: a client without AUTH outside trusted networks gets 530 5.7.0, and is cut off after repeated tries', async (t) => {
  const box = await startSubmission(t)
  const c = await RawSmtp.open(box.starttlsPort)
  await c.handshake(box.tls)
  for (let i = 0; i < 3; i++) {
    const r = await c.cmd('MAIL FROM:<statements@bank.example>')
    t.equal(r.code, 530)
    t.match(r.text, /^5\.7\.0 EAUTH_REQUIRED/)
  }
  const last = await c.cmd('MAIL FROM:<statements@bank.example>')
  t.equal(last.code, 421, 'fourth try closes the connection')
  c.close()
})

t.test('failed AUTH is rate-limited per client address (454 4.7.0), then allowed again after the block', async (t) => {
  let now = 1_000_000
  const clock = { now: () => now }
  const box = await startSubmission(t, { submission: { authFailures: { max: 3, windowSeconds: 60, blockSeconds: 120 } } }, { clock })
  const c = await RawSmtp.open(box.starttlsPort)
  await c.handshake(box.tls)
  for (let i = 0; i < 3; i++) t.equal((await c.authPlain(ACCOUNT.name, `guess ${i}`)).code, 535)
  const blocked = await c.authPlain(ACCOUNT.name, ACCOUNT.password)
  t.equal(blocked.code, 454, 'even the right password is refused while blocked')
  t.match(blocked.text, /^4\.7\.0 EAUTH_RATE_LIMITED/)
  now += 121_000
  t.equal((await c.authPlain(ACCOUNT.name, ACCOUNT.password)).code, 235, 'accepted once the block has passed')
  c.close()
  t.ok(
    box.records.some((r) => r.msg === 'auth failed' && r.blockedNow === true),
    'the block is logged',
  )
})

t.test('S8: global allowlist refuses a client at connect with 554 5.7.1', async (t) => {
  const box = await startSubmission(t, { submission: { allowFrom: ['127.0.0.2/32'] } })
  const c = await RawSmtp.open(box.starttlsPort, { localAddress: '127.0.0.1' })
  const r = await c.reply()
  t.equal(r.code, 554)
  t.match(r.text, /^5\.7\.1 ECLIENT_NOT_ALLOWED client address 127\.0\.0\.1/)
  c.close()
  const ok = await RawSmtp.open(box.starttlsPort, { localAddress: '127.0.0.2' })
  t.equal((await ok.reply()).code, 220, 'an address inside the allowlist is greeted')
  ok.close()
})

t.test('S7, S8: an allowlist approved on the admin page applies to the next connection, without a restart', async (t) => {
  const box = await startSubmission(t, { submission: { allowFrom: ['127.0.0.2/32'] } })
  const before = await RawSmtp.open(box.starttlsPort, { localAddress: '127.0.0.1' })
  t.equal((await before.reply()).code, 554)
  before.close()
  const { parseConfig } = await import('../../../firmware/config/load.ts')
  box.server.reconfigure(parseConfig({ dataDir: box.config.dataDir, submission: { allowFrom: ['127.0.0.1/32'] } }))
  const after = await RawSmtp.open(box.starttlsPort, { localAddress: '127.0.0.1' })
  t.equal((await after.reply()).code, 220, 'now allowed')
  after.close()
  const out = await RawSmtp.open(box.starttlsPort, { localAddress: '127.0.0.2' })
  t.equal((await out.reply()).code, 554, 'and the address no longer listed is refused')
  out.close()
})

t.test('S8: per-account allowlist refuses AUTH from elsewhere with 554 5.7.1', async (t) => {
  const box = await startSubmission(t, {
    submission: { accounts: [{ name: ACCOUNT.name, passwordHash: await accountHash(), allowFrom: ['127.0.0.9/32'] }] },
  })
  const c = await RawSmtp.open(box.starttlsPort)
  await c.handshake(box.tls)
  const r = await c.authPlain(ACCOUNT.name, ACCOUNT.password)
  t.equal(r.code, 554)
  t.match(r.text, /^5\.7\.1 ECLIENT_NOT_ALLOWED account firm-statements may not log in from 127\.0\.0\.1/)
  c.close()
})

t.test('trusted networks submit without AUTH (over TLS); others still need it', async (t) => {
  const box = await startSubmission(t, { submission: { trustedNetworks: ['127.0.0.5/32'] } })
  t.ok(
    box.records.some((r) => r.msg === 'trusted networks may submit without AUTH'),
    'the relaxation is logged at start',
  )
  const c = await RawSmtp.open(box.starttlsPort, { localAddress: '127.0.0.5' })
  await c.handshake(box.tls)
  const r = await send(c, `${message()}.\r\n`)
  t.equal(r.end.code, 250)
  c.close()
  t.equal(box.handoff.mails.length, 1)
  t.equal(box.handoff.mails[0]!.envelope.account, undefined)

  const other = await RawSmtp.open(box.starttlsPort, { localAddress: '127.0.0.6' })
  await other.handshake(box.tls)
  t.equal((await other.cmd('MAIL FROM:<statements@bank.example>')).code, 530)
  other.close()
})

t.test('size limit: announced in EHLO SIZE, MAIL FROM SIZE= over it refused, DATA over it 552 5.3.4', async (t) => {
  const box = await startSubmission(t, { submission: { maxMessageBytes: 4096 } })
  const c = await loggedIn(box.starttlsPort, box.tls)
  const ehlo = await c.cmd('EHLO client.test')
  t.match(ehlo.text, /SIZE 4096/)
  t.equal((await c.cmd('MAIL FROM:<statements@bank.example> SIZE=5000')).code, 552)
  const r = await send(c, `${message('x'.repeat(70) + '\r\n'.repeat(1) + ('y'.repeat(70) + '\r\n').repeat(80))}.\r\n`)
  t.equal(r.end.code, 552)
  t.match(r.end.text, /^5\.3\.4 ESIZE_LIMIT/)
  const small = await send(c, `${message()}.\r\n`)
  t.equal(small.end.code, 250, 'the session goes on after a refusal')
  c.close()
  t.equal(box.handoff.mails.length, 1)
})

t.test('SMTP smuggling: bare-LF terminators never split a message', async (t) => {
  const smuggled = 'MAIL FROM:<ceo@bank.example>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nFrom: ceo@bank.example\r\n\r\nsmuggled\r\n'
  for (const terminator of ['\n.\n', '\r.\n', '\n.\r\n', '\r\n.\n', '\r.\r\n']) {
    t.test(`reject mode, ${JSON.stringify(terminator)}`, async (t) => {
      const box = await startSubmission(t)
      const c = await loggedIn(box.starttlsPort, box.tls)
      const r = await send(c, `${message('first part').slice(0, -2)}${terminator}${smuggled}.\r\n`)
      t.equal(r.end.code, 550)
      t.match(r.end.text, /^5\.5\.2 EDATA_BARE_NEWLINE/)
      // Whatever the server saw as commands after that would answer here; it must be a clean state.
      t.equal((await c.cmd('RSET')).code, 250)
      c.close()
      t.equal(box.handoff.mails.length, 0, 'nothing accepted, least of all a second message')
    })
  }
  t.test('normalize mode: one message, CRLF only, the smuggled text stays body text', async (t) => {
    const box = await startSubmission(t, { submission: { bareLineFeed: 'normalize' } })
    const c = await loggedIn(box.starttlsPort, box.tls)
    const r = await send(c, `${message('first part').slice(0, -2)}\n.\n${smuggled}.\r\n`)
    t.equal(r.end.code, 250)
    t.equal((await c.cmd('QUIT')).code, 221)
    t.equal(box.handoff.mails.length, 1, 'exactly one message')
    const body = box.handoff.mails[0]!.message.toString('latin1')
    t.match(body, /first part\r\n\.\r\nMAIL FROM:<ceo@bank\.example>\r\n/, 'smuggled commands are inside the one message')
    t.notMatch(body.replace(/\r\n/g, ''), /[\r\n]/, 'no bare CR or LF left')
    t.same(box.handoff.mails[0]!.envelope.rcptTo, ['customer@example.net'])
  })
})

t.test('a NUL byte is refused with 550 5.6.0', async (t) => {
  const box = await startSubmission(t)
  const c = await loggedIn(box.starttlsPort, box.tls)
  const r = await send(c, `${message('bad\0byte')}.\r\n`)
  t.equal(r.end.code, 550)
  t.match(r.end.text, /^5\.6\.0 EDATA_NUL/)
  c.close()
  t.equal(box.handoff.mails.length, 0)
  t.match(box.events.at(-1), { type: 'submission.refused', account: ACCOUNT.name, clientAddress: '127.0.0.1', code: 'EDATA_NUL', reply: /^550 / })
})

t.test('an accepted mail reaches the handoff byte for byte, with envelope and TLS details', async (t) => {
  const box = await startSubmission(t)
  const c = await loggedIn(box.starttlsPort, box.tls)
  const msg = message('Line one\r\n..leading dot line\r\n中文內容')
  const r = await send(c, Buffer.from(`${msg.replace(/\r\n\.\./g, '\r\n...')}.\r\n`, 'utf8'))
  t.equal(r.end.code, 250)
  t.match(r.end.text, /^2\.0\.0 Ok: queued as [A-Za-z0-9_-]{12}$/)
  c.close()
  const mail = box.handoff.mails[0]!
  const [trace, rest] = splitTrace(mail.message.toString('utf8'))
  t.equal(rest, msg, 'dot-unstuffed, otherwise identical after the trace field')
  t.match(
    trace,
    new RegExp(
      `^Received: by localhost \\(Statement Gateway\\) with ESMTPSA id ${mail.envelope.id};\r\n\t[A-Z][a-z]{2}, \\d{1,2} [A-Z][a-z]{2} \\d{4} \\d\\d:\\d\\d:\\d\\d \\+0000\r\n$`,
    ),
    'RFC 5321 §4.4 trace field: box, protocol, queue id, date; nothing of the client by default',
  )
  t.ok(r.end.text.endsWith(mail.envelope.id), 'the id in the trace field is the one the client was given')
  t.match(mail.envelope, { mailFrom: 'statements@bank.example', rcptTo: ['customer@example.net'], account: ACCOUNT.name, clientAddress: '127.0.0.1' })
  t.match(mail.envelope.tls?.protocol, /^TLSv1\.[23]$/)
  const accepted = box.records.find((r) => r.msg === 'mail accepted')
  t.match(accepted, { from: 's****s@bank.example', rcpt: ['c****r@example.net'] }, 'addresses masked in the log')
  t.notMatch(box.logText(), /customer@example\.net|中文/, 'no clear recipient and no body in the log')
  t.match(box.events.at(-1), {
    type: 'submission.accepted',
    id: mail.envelope.id,
    account: ACCOUNT.name,
    recipients: ['customer@example.net'],
    bytes: mail.message.length,
  })
})

t.test("trace field names the submitting system only when configured to (its name and address are the firm's internals)", async (t) => {
  for (const [show, from] of [
    ['name', 'Received: from client.bank.internal\r\n\tby localhost (Statement Gateway) with ESMTPSA id '],
    ['name-and-address', 'Received: from client.bank.internal ([127.0.0.1])\r\n\tby localhost (Statement Gateway) with ESMTPSA id '],
  ] as const) {
    const box = await startSubmission(t, { submission: { traceClient: show } })
    const c = await loggedIn(box.starttlsPort, box.tls, 'client.bank.internal')
    t.equal((await send(c, `${message()}.\r\n`)).end.code, 250)
    c.close()
    const [trace] = splitTrace(box.handoff.mails[0]!.message.toString('utf8'))
    t.ok(trace.startsWith(from), `${show}: ${JSON.stringify(trace.slice(0, 70))}`)
  }
})

t.test('swaks (independent client) gets 250 over STARTTLS and over implicit TLS', async (t) => {
  const box = await startSubmission(t)
  for (const mode of [['-tls'], ['-tlsc']]) {
    const port = mode[0] === '-tls' ? box.starttlsPort : box.implicitPort
    const { stdout } = await run(
      'swaks',
      [
        '--server',
        `127.0.0.1:${port}`,
        ...mode,
        '--auth',
        'LOGIN',
        '--auth-user',
        ACCOUNT.name,
        '--auth-password',
        ACCOUNT.password,
        '--from',
        'statements@bank.example',
        '--to',
        'customer@example.net',
        '--header',
        'Subject: swaks test',
      ],
      { timeout: 20_000 },
    )
    t.match(stdout, /<~ {2}250 2\.0\.0 Ok: queued as/, `${mode[0]} accepted`)
  }
  t.equal(box.handoff.mails.length, 2)
})

t.test('nodemailer (the library firms commonly use) submits over implicit TLS', async (t) => {
  const nodemailer = await import('nodemailer')
  const box = await startSubmission(t)
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port: box.implicitPort,
    secure: true,
    auth: { user: ACCOUNT.name, pass: ACCOUNT.password },
    tls: box.tls,
  })
  const info = await transport.sendMail({ from: 'statements@bank.example', to: 'customer@example.net', subject: '有價證券月對帳單', text: '您好' })
  t.match(info.response, /^250 2\.0\.0 Ok: queued as/)
  transport.close()
  t.equal(box.handoff.mails.length, 1)
})

t.test('a configured certificate and key are used instead of a self-made one', async (t) => {
  const dir = tempDir(t)
  const made = makeSelfSignedServerCert({ hostname: 'smtp.bank.example' })
  writeFileSync(join(dir, 'c.pem'), made.certPem)
  writeFileSync(join(dir, 'k.pem'), made.keyPem, { mode: 0o600 })
  const box = await startSubmission(t, { submission: { tls: { certFile: join(dir, 'c.pem'), keyFile: join(dir, 'k.pem') } } })
  const s = tlsConnect({ port: box.implicitPort, host: '127.0.0.1', ...box.tls })
  await new Promise((resolve, reject) => s.once('secureConnect', resolve).once('error', reject))
  t.equal(s.getPeerCertificate().fingerprint256, made.certificate.fingerprint256, 'the configured certificate is served')
  s.destroy()
  t.notOk(existsSync(join(box.config.dataDir, 'tls')), 'no self-made key when one is configured')

  const half = startSubmission(t, { submission: { tls: { certFile: join(dir, 'c.pem') } } })
  await t.rejects(half, /certFile and submission.tls.keyFile must be set together/)
})
