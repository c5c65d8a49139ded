import { readFileSync, statSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { ACCOUNT, message } from '../helpers/box.ts'
import { spawnDaemon, writeDaemonConfig } from '../helpers/daemon.ts'
import { RawSmtp } from '../helpers/smtp.ts'

type Endpoints = { starttls: { port: number }; implicitTls: { port: number } }

async function startDaemon(t: Parameters<typeof spawnDaemon>[0], extra: Record<string, unknown> = {}) {
  const cfg = await writeDaemonConfig(t, { shutdown: { graceMs: 10_000 }, ...extra })
  const child = spawnDaemon(t, ['--config', cfg.path])
  const listening = (await child.waitFor((r) => r.msg === 'submission listening')) as unknown as Endpoints
  const tls = { ca: readFileSync(join(cfg.dataDir, 'tls', 'submission.crt')), servername: 'localhost' }
  return { child, cfg, ports: { starttls: listening.starttls.port, implicit: listening.implicitTls.port }, tls }
}

async function openTransaction(port: number, tls: object): Promise<RawSmtp> {
  const c = await RawSmtp.open(port)
  await c.handshake(tls)
  if ((await c.authPlain(ACCOUNT.name, ACCOUNT.password)).code !== 235) throw new Error('auth')
  await c.cmd('MAIL FROM:<statements@bank.example>')
  await c.cmd('RCPT TO:<customer@example.net>')
  const d = await c.cmd('DATA')
  if (d.code !== 354) throw new Error(`DATA ${d.code}`)
  return c
}

t.test('first start makes the TLS key and certificate, 0600, and prints where it listens', async (t) => {
  const { child, cfg, ports } = await startDaemon(t)
  for (const f of ['submission.key', 'submission.crt']) {
    t.equal(statSync(join(cfg.dataDir, 'tls', f)).mode & 0o777, 0o600, `${f} is 0600`)
  }
  await child.waitFor((r) => r.msg === 'statement gateway started')
  t.match(child.stderr(), new RegExp(`submission STARTTLS +127\\.0\\.0\\.1:${ports.starttls}`))
  t.match(child.stderr(), new RegExp(`submission implicit TLS +127\\.0\\.0\\.1:${ports.implicit}`))
  child.proc.kill('SIGTERM')
  t.same(await child.exited, { code: 0, signal: null })
})

t.test('SIGTERM during a transaction: no new connections, the transaction finishes with 250, exit 0', async (t) => {
  const { child, ports, tls } = await startDaemon(t)
  const idle = await RawSmtp.open(ports.starttls)
  await idle.reply()
  const c = await openTransaction(ports.starttls, tls)
  c.write(message('first half of the statement').slice(0, 60))
  child.proc.kill('SIGTERM')
  await child.waitFor((r) => r.msg === 'listeners closed, draining connections')
  // A new client is refused at TCP level now that the listener is closed.
  const refused = await new Promise<string>((resolve) => {
    const s = connect({ host: '127.0.0.1', port: ports.starttls })
    s.on('connect', () => (s.destroy(), resolve('connected')))
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
  })
  t.equal(refused, 'ECONNREFUSED')
  const idleReply = await idle.reply()
  t.equal(idleReply.code, 421, 'an idle client is told the service is going away')
  t.match(idleReply.text, /4\.3\.2 ESHUTTING_DOWN/)
  c.write(`${message('first half of the statement').slice(60)}.\r\n`)
  const end = await c.reply()
  t.equal(end.code, 250, 'the transaction in flight completes')
  const bye = await c.reply().catch(() => ({ code: 0 }))
  t.ok([421, 0].includes(bye.code), 'then the connection is closed')
  t.same(await child.exited, { code: 0, signal: null })
  t.ok(child.records.some((r) => r.msg === 'mail accepted'))
  t.ok(child.records.some((r) => r.msg === 'stopped'))
})

t.test('a second signal forces exit while a transaction is still open', async (t) => {
  const { child, ports, tls } = await startDaemon(t)
  const c = await openTransaction(ports.starttls, tls)
  child.proc.kill('SIGTERM')
  await child.waitFor((r) => r.msg === 'stopping: no new connections, finishing transactions in flight')
  child.proc.kill('SIGINT')
  const t0 = Date.now()
  t.same(await child.exited, { code: 1, signal: null })
  t.ok(Date.now() - t0 < 5000, 'forced exit does not wait for the grace period')
  t.ok(child.records.some((r) => r.msg === 'second stop: forcing exit'))
  c.close()
})

t.test('a bad config stops start-up with exit 78 and a message naming the key', async (t) => {
  const cfg = await writeDaemonConfig(t, { submission: { starttlsPort: 'twenty' } })
  const child = spawnDaemon(t, ['--config', cfg.path])
  t.same(await child.exited, { code: 78, signal: null })
  t.match(child.stderr(), /configuration error: config key "submission\.starttlsPort": expected an integer, got "twenty"/)
})

t.test('a port already in use fails start-up cleanly with exit 1', async (t) => {
  const first = await startDaemon(t)
  const cfg = await writeDaemonConfig(t, { submission: { starttlsPort: first.ports.starttls } })
  const child = spawnDaemon(t, ['--config', cfg.path])
  t.same(await child.exited, { code: 1, signal: null })
  t.ok(child.records.some((r) => r.msg === 'component failed to start' && r.component === 'submission'))
  first.child.proc.kill('SIGTERM')
  await first.child.exited
})

t.test('S7, S9: a configuration version edited on disk stops the next start, naming the file; put back, the box starts', async (t) => {
  const { child, cfg } = await startDaemon(t)
  await child.waitFor((r) => r.msg === 'statement gateway started')
  child.proc.kill('SIGTERM')
  await child.exited
  const { readdirSync, writeFileSync } = await import('node:fs')
  const dir = join(cfg.dataDir, 'config', 'versions')
  t.same(readdirSync(dir), ['000001.json'], 'the first start made version 1')
  const file = join(dir, '000001.json')
  const original = readFileSync(file, 'utf8')
  writeFileSync(file, original.replace('"graceMs":10000', '"graceMs":1'))
  const again = spawnDaemon(t, ['--config', cfg.path])
  const exit = await again.exited
  t.equal(exit.code, 78, 'EX_CONFIG')
  t.match(again.stderr(), `statement-gateway: not started: configuration version ${file} fails its HMAC check`)
  writeFileSync(file, original)
  const third = spawnDaemon(t, ['--config', cfg.path])
  await third.waitFor((r) => r.msg === 'statement gateway started')
  third.proc.kill('SIGTERM')
  t.same(await third.exited, { code: 0, signal: null })
})

t.test('S7: a change approved since the last start stays in force across a restart with the same config file', async (t) => {
  const { child, cfg } = await startDaemon(t)
  await child.waitFor((r) => r.msg === 'statement gateway started')
  child.proc.kill('SIGTERM')
  await child.exited
  // What approval on the admin page writes: the next version, from the page (made here with the box's token while it is stopped).
  const { parseConfig } = await import('../../firmware/config/load.ts')
  const { ConfigVersions } = await import('../../firmware/config/versions.ts')
  const { hsmFromConfig } = await import('../../firmware/keys/service.ts')
  const { CONFIG_VERSION_LABEL } = await import('../../firmware/keys/labels.ts')
  const config = parseConfig({ dataDir: cfg.dataDir })
  const hsm = hsmFromConfig(config, { now: () => Date.now() })
  await hsm.open()
  const versions = new ConfigVersions({
    dataDir: cfg.dataDir,
    mac: (d) => hsm.keys.hmac(CONFIG_VERSION_LABEL, d),
    clock: { now: () => Date.now() },
    events: { emit() {} },
  })
  const inForce = (await versions.inForce())!
  await versions.add({
    config: { ...(inForce.config as object), log: { level: 'warn' } },
    author: 'wang',
    approver: 'mei',
    reason: 'quieter logs',
    source: 'page',
  })
  await hsm.close()

  const again = spawnDaemon(t, ['--config', cfg.path])
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      if (/Stop it with Ctrl-C/.test(again.stderr())) resolve(void clearInterval(timer))
    }, 100)
  })
  t.notOk(
    again.records.some((r) => r.msg === 'statement gateway started'),
    'info records are not logged: the box runs on version 2 (log.level warn), not on the unchanged file',
  )
  again.proc.kill('SIGTERM')
  t.same(await again.exited, { code: 0, signal: null })
  const { readdirSync } = await import('node:fs')
  t.same(readdirSync(versions.dir), ['000001.json', '000002.json'], 'the unchanged file was not imported again')
})
