import { connect as netConnect } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { ACCOUNT, startSubmission } from '../../helpers/box.ts'
import { RawSmtp } from '../../helpers/smtp.ts'

/** #15: what one client — careless, misconfigured or hostile — may cost everyone else. */

async function login(port: number, tls: object, password: string, localAddress?: string): Promise<{ code: number; ms: number }> {
  const c = await RawSmtp.open(port, localAddress ? { localAddress } : {})
  try {
    await c.handshake(tls)
    const started = Date.now()
    const r = await c.authPlain(ACCOUNT.name, password)
    return { code: r.code, ms: Date.now() - started }
  } finally {
    c.close()
  }
}

t.test('finding 2: wrong passwords block the address they come from, never the account; the account is only slowed', async (t) => {
  const box = await startSubmission(t, { submission: { authFailures: { max: 5, windowSeconds: 900, blockSeconds: 900 } } })
  for (let i = 0; i < 5; i++) t.equal((await login(box.starttlsPort, box.tls, 'wrong password', '127.0.0.77')).code, 535)
  const attacker = await login(box.starttlsPort, box.tls, ACCOUNT.password, '127.0.0.77')
  t.equal(attacker.code, 454, 'the misbehaving host is blocked, even with the right password')
  const firm = await login(box.starttlsPort, box.tls, ACCOUNT.password, '127.0.0.1')
  t.equal(firm.code, 235, "the firm's statement host still logs in")
  t.ok(firm.ms >= 200, `but the account under attack is answered more slowly (${firm.ms} ms)`)
  const after = await login(box.starttlsPort, box.tls, ACCOUNT.password, '127.0.0.1')
  t.ok(after.ms < firm.ms, 'a success clears the slow-down')
})

t.test('finding 3: one address cannot fill the listener (slow-loris); a client that never authenticates is cut off', async (t) => {
  const box = await startSubmission(t, { submission: { maxClientsPerAddress: 5, authTimeoutMs: 1500 } })
  const idle: RawSmtp[] = []
  for (let i = 0; i < 5; i++) {
    const c = await RawSmtp.open(box.starttlsPort, { localAddress: '127.0.0.78' })
    await c.reply()
    idle.push(c)
  }
  const extra = await RawSmtp.open(box.starttlsPort, { localAddress: '127.0.0.78' })
  const refused = await extra.reply()
  t.equal(`${refused.code} ${refused.text}`, '421 4.7.0 ECLIENT_TOO_MANY too many connections from your address, try again later')
  extra.close()
  // Implicit TLS: nothing can be said before the handshake, the sixth connection is simply closed.
  const tlsIdle = await Promise.all(Array.from({ length: 5 }, () => RawSmtp.open(box.implicitPort, { localAddress: '127.0.0.79', tls: box.tls })))
  const dropped = await new Promise<string>((resolve) => {
    const s = tlsConnect({ socket: netConnect({ host: '127.0.0.1', port: box.implicitPort, localAddress: '127.0.0.79' }), ...box.tls })
    s.on('secureConnect', () => resolve('handshake completed'))
    s.on('error', (e: Error) => resolve(`closed: ${e.message}`))
    s.on('close', () => resolve('closed'))
  })
  t.match(dropped, /^closed/, 'the sixth implicit-TLS connection from one address is closed before its handshake')
  t.equal((await login(box.starttlsPort, box.tls, ACCOUNT.password, '127.0.0.1')).code, 235, 'another address is served meanwhile')
  await sleep(2000)
  t.ok(
    idle.every((c) => c.closed),
    'connections that never authenticated are closed after authTimeoutMs',
  )
  t.ok(tlsIdle.every((c) => c.closed))
  const counts = box.server.guardCounts!
  t.ok(counts.refusedBusyAddress >= 2 && counts.authTimeouts >= 10, `counted: ${JSON.stringify(counts)}`)
})

t.test('finding 4: no client-initiated TLS renegotiation on either port', async (t) => {
  const box = await startSubmission(t)
  const renegotiate = (socket: import('node:tls').TLSSocket) =>
    new Promise<string>((resolve) => {
      socket.on('error', (e: Error) => resolve(`error: ${e.message}`))
      const ok = socket.renegotiate({}, (err) => resolve(err ? `refused: ${err.message}` : 'renegotiated'))
      if (!ok) resolve('refused locally')
    })
  const implicit = tlsConnect({ host: '127.0.0.1', port: box.implicitPort, maxVersion: 'TLSv1.2', ...box.tls })
  await new Promise((r) => implicit.once('secureConnect', r))
  t.notMatch(await renegotiate(implicit), /^renegotiated/, 'implicit TLS')
  implicit.destroy()
  const c = await RawSmtp.open(box.starttlsPort)
  await c.reply()
  await c.cmd('EHLO client.test')
  await c.starttls({ ...box.tls, maxVersion: 'TLSv1.2' })
  t.notMatch(await renegotiate(c.socket as import('node:tls').TLSSocket), /^renegotiated/, 'STARTTLS')
  c.close()
})

t.test('finding 5: client TLS failures are counted, logged once a minute per address, without a stack', async (t) => {
  const box = await startSubmission(t)
  for (let i = 0; i < 20; i++) {
    await new Promise<void>((resolve) => {
      const s = tlsConnect({
        host: '127.0.0.1',
        port: box.implicitPort,
        maxVersion: 'TLSv1.1',
        minVersion: 'TLSv1',
        ciphers: 'DEFAULT:@SECLEVEL=0',
        ...box.tls,
      })
      s.on('error', () => resolve())
      s.on('secureConnect', () => (s.destroy(), resolve()))
    })
  }
  await sleep(200)
  const lines = box.records.filter((r) => r.msg?.toString().startsWith('client error'))
  t.equal(lines.length, 1, 'one log line for twenty failed handshakes from one address')
  t.equal(lines[0]!.level, 30, 'at info level')
  t.notOk(JSON.stringify(lines[0]).includes('stack'), 'no stack trace')
  t.notOk(
    box.records.some((r) => r.level === 50),
    'nothing at error level',
  )
  t.ok((box.server.guardCounts!.clientErrors.tls ?? 0) >= 20, 'every failure counted')
})

t.test('a client that comes and goes (STARTTLS, AUTH, QUIT) gives its place back every time', async (t) => {
  const box = await startSubmission(t, { submission: { maxClientsPerAddress: 3 } })
  for (let i = 0; i < 10; i++)
    t.equal((await login(box.starttlsPort, box.tls, ACCOUNT.password, '127.0.0.80')).code, 235, `login ${i + 1} of 10 with a limit of 3`)
})

t.test('#29 finding 6: room in arrival order — 6 transactions without SIZE= and room for 2: 2 × 250, 4 × 452 before their data', async (t) => {
  const mib = 1024 * 1024
  // Room for two: each undeclared transaction is given 2 MiB (× 4 copies) at MAIL FROM.
  const box = await startSubmission(t, { submission: { memoryBudgetBytes: 16 * mib, undeclaredReserveBytes: 2 * mib } })
  const clients = await Promise.all(
    Array.from({ length: 6 }, async () => {
      const c = await RawSmtp.open(box.starttlsPort)
      await c.handshake(box.tls)
      t.equal((await c.authPlain(ACCOUNT.name, ACCOUNT.password)).code, 235)
      return c
    }),
  )
  const mail = Buffer.from(
    `From: statements@bank.example\r\nTo: customer@example.net\r\nSubject: s\r\n\r\n${'0123456789abcdef'.repeat(64 * 1024).replace(/.{64}/g, '$&\r\n')}\r\n.\r\n`,
  )
  const answers = await Promise.all(
    clients.map(async (c) => {
      const from = await c.cmd('MAIL FROM:<statements@bank.example>')
      if (from.code !== 250) return `MAIL ${from.code} ${from.text}`
      await c.cmd('RCPT TO:<customer@example.net>')
      await c.cmd('DATA')
      c.write(mail)
      return `DATA ${(await c.reply(30_000)).code}`
    }),
  )
  t.same(answers.filter((a) => a === 'DATA 250').length, 2, `two complete (${mail.length} bytes each)`)
  t.same(answers.filter((a) => a.startsWith('MAIL 452 4.3.1 ESUBMISSION_BUSY')).length, 4, 'four are turned away at MAIL FROM, before their data')
  for (const c of clients) c.close()
  t.equal(box.server.memory.used, 0, 'all room given back')
})

t.test('#35: the shipped default greets the firm’s submitters with no pause; a pause, when set, refuses a client that talks first', async (t) => {
  const box = await startSubmission(t)
  t.equal(box.config.submission.greetingDelayMs, 0, 'default: no pause')
  // A pause would make every greeting wait at least its length; the quickest of five sooner than
  // smtp-server's own 100 ms shows there was none (load only delays).
  const times: number[] = []
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now()
    const c = await RawSmtp.open(box.starttlsPort)
    t.equal((await c.reply()).code, 220)
    times.push(performance.now() - t0)
    c.close()
  }
  t.ok(Math.min(...times) < 90, `quickest greeting ${Math.min(...times).toFixed(1)} ms`)

  const paused = await startSubmission(t, { submission: { greetingDelayMs: 1000 } })
  const early = await RawSmtp.open(paused.starttlsPort)
  early.write('EHLO early.example\r\n')
  t.match(await early.reply(), { code: 421, text: /talk too soon/ })
  early.close()
})
