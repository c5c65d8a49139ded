import { execFileSync } from 'node:child_process'
import { chmodSync, chownSync, copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { tempDir } from '../../helpers/box.ts'
import { spawnDaemon, submitter, writeDaemonConfig } from '../../helpers/daemon.ts'
import { run } from '../../helpers/hsm.ts'
import { smtpError, startReceiver } from '../../helpers/receiver.ts'

/**
 * M8 with a real MTA's bounce: Debian's Postfix, configured by the test in a
 * directory of its own on loopback, is the statement's next hop. It takes the
 * statement with a 250, as a customer's MX does; relaying it on, it is
 * refused with 550 5.1.1 by the final mailbox server, and sends its own,
 * genuine RFC 3464 DSN to the statement's VERP sender — the box's return-path
 * listener. Nothing in this test writes the DSN.
 */
const CLI = fileURLToPath(new URL('../../../provisioning/reports.ts', import.meta.url))

async function freePort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const { port } = s.address() as AddressInfo
  await new Promise((r) => s.close(r))
  return port
}

function startPostfix(
  t: { teardown(fn: () => unknown): void },
  port: number,
  relay: number,
  returnPathDomain: string,
  listener: number,
  extra: { transport?: string; mainCf?: string[] } = {},
): string {
  const dir = tempDir(t, 'sg-postfix-')
  chmodSync(dir, 0o755) // Postfix's own processes (user postfix) reach their data directory through it
  const conf = join(dir, 'conf')
  for (const d of [conf, join(dir, 'queue'), join(dir, 'data')]) mkdirSync(d, { recursive: true })
  chownSync(join(dir, 'data'), Number(execFileSync('id', ['-u', 'postfix']).toString().trim()), 0)
  copyFileSync('/etc/postfix/master.cf', join(conf, 'master.cf'))
  writeFileSync(join(conf, 'master.cf'), readFileSync(join(conf, 'master.cf'), 'utf8').replace(/^smtp\s+inet\s.*$/m, `127.0.0.1:${port} inet n - n - - smtpd`))
  writeFileSync(join(conf, 'transport'), `${returnPathDomain} smtp:[127.0.0.1]:${listener}\n${extra.transport ?? ''}`)
  writeFileSync(
    join(conf, 'main.cf'),
    [
      'compatibility_level = 3.6',
      'myhostname = mx.customer.example',
      `queue_directory = ${join(dir, 'queue')}`,
      `data_directory = ${join(dir, 'data')}`,
      'inet_interfaces = loopback-only',
      'inet_protocols = ipv4',
      'mydestination =',
      'mynetworks = 127.0.0.0/8',
      // Everything on to the final mailbox server; the bounces to the box's return-path listener.
      `relayhost = [127.0.0.1]:${relay}`,
      `transport_maps = texthash:${join(conf, 'transport')}`,
      'smtpd_relay_restrictions = permit_mynetworks, reject',
      'smtpd_peername_lookup = no',
      'smtp_tls_security_level = none',
      'smtp_address_preference = ipv4',
      `maillog_file = /var/tmp/${dir.split('/').pop()}-postfix.log`,
      ...(extra.mainCf ?? []),
      '',
    ].join('\n'),
  )
  execFileSync('postconf', ['-c', conf, '-F', '*/*/chroot = n'])
  execFileSync('postfix', ['-c', conf, 'check'])
  execFileSync('postfix', ['-c', conf, 'start'], { stdio: 'ignore' })
  const log = `/var/tmp/${dir.split('/').pop()}-postfix.log`
  t.teardown(() => {
    execFileSync('postfix', ['-c', conf, 'stop'], { stdio: 'ignore' })
    rmSync(log, { force: true })
  })
  return log
}

t.test('M8: Postfix takes the statement with 250, the mailbox server refuses it, and Postfix’s own DSN makes the ledger say bounced, paper owed', async (t) => {
  // The customer's mailbox server: the mailbox does not exist.
  const mailbox = await startReceiver(t, {
    tls: false,
    onRcptTo: (a) => smtpError(550, `5.1.1 <${a}>: Recipient address rejected: User unknown in local recipient table`),
  })
  const [postfixPort, listenerPort] = [await freePort(), await freePort()]
  const log = startPostfix(t, postfixPort, mailbox.port, 'bounce.bank.example', listenerPort)

  const cfg = await writeDaemonConfig(t, {
    spool: { verifyOnStart: false },
    delivery: { routes: [{ domain: '*', host: '127.0.0.1', port: postfixPort, tls: 'opportunistic' }] },
    reports: { timeZone: 'UTC' },
    returnPath: { domains: [{ from: 'bank.example', returnPath: 'bounce.bank.example' }], listen: `127.0.0.1:${listenerPort}` },
  })
  const child = spawnDaemon(t, ['--config', cfg.path])
  const listening = (await child.waitFor((r) => r.msg === 'submission listening')) as unknown as { starttls: { port: number } }
  await child.waitFor((r) => r.msg === 'return-path listener up')
  const submit = await submitter(t, cfg.dataDir, listening.starttls.port)
  await submit.sendMail({
    from: 'statements@bank.example',
    to: 'wang.customer@customer.example',
    subject: '2026年11月有價證券月對帳單',
    text: 'statement',
    headers: { 'X-Statement-ID': 'S-PF-1', 'X-Statement-Batch': '2026-11-monthly' },
  })

  const ledger = async () =>
    JSON.parse((await run(process.execPath, [CLI, 'statement', 'S-PF-1', '--format', 'json', '--config', cfg.path])).stdout) as Record<string, unknown>[]
  let rows: Record<string, unknown>[] = []
  for (const end = Date.now() + 60_000; rows[0]?.state !== 'bounced' && Date.now() < end;) {
    rows = await ledger().catch(() => [])
    if (rows[0]?.state !== 'bounced') await new Promise((r) => setTimeout(r, 250))
  }
  const postfixLog = (() => {
    try {
      return readFileSync(log, 'utf8')
    } catch {
      return '(no Postfix log)'
    }
  })()
  t.match(
    rows[0],
    { state: 'bounced', bounce_reason: 'invalid-recipient', bounce_hard: 1, paper_reason: 'bounced: invalid-recipient' },
    rows[0]?.state === 'bounced' ? 'the ledger: bounced, invalid recipient, paper owed' : `not bounced; Postfix's log:\n${postfixLog.slice(-3000)}`,
  )
  t.ok(rows[0]?.delivered_at, 'delivered first: Postfix answered 250')
  t.match(postfixLog, /status=bounced/, 'Postfix bounced it')
  t.match(postfixLog, /sender non-delivery notification/, 'and sent its own DSN')
  t.equal(mailbox.received.length, 0, 'the mailbox server took nothing')
  const paper = JSON.parse(
    (await run(process.execPath, [CLI, 'paper', '--month', new Date().toISOString().slice(0, 7), '--format', 'json', '--config', cfg.path])).stdout,
  ) as unknown[]
  t.match(paper, [{ statement_id: 'S-PF-1', reason: 'bounced: invalid-recipient' }], 'on the paper-owed list')
})

t.test("#30: the firm's notice after a returned bounce carries what the receiver said — Postfix's 5.1.1, 5.2.2, 4.2.2 and 4.4.1", async (t) => {
  // The mailbox server refuses three ways; a fourth domain's server is not there at all. Postfix gives
  // up on a deferral at once (maximal_queue_lifetime = 0), so its expiry notices come in seconds.
  const mailbox = await startReceiver(t, {
    tls: false,
    onRcptTo: (a) =>
      a.startsWith('gone')
        ? smtpError(550, `5.1.1 <${a}>: Recipient address rejected: User unknown in local recipient table`)
        : a.startsWith('full')
          ? smtpError(552, `5.2.2 <${a}>: Mailbox full`)
          : smtpError(451, `4.2.2 <${a}>: mailbox over quota, try again later`),
  })
  const notices = await startReceiver(t, { tls: false })
  const [postfixPort, listenerPort, nobody] = [await freePort(), await freePort(), await freePort()]
  startPostfix(t, postfixPort, mailbox.port, 'bounce.bank.example', listenerPort, {
    transport: `dead.example smtp:[127.0.0.1]:${nobody}\n`,
    mainCf: ['maximal_queue_lifetime = 0', 'bounce_queue_lifetime = 0'],
  })
  const cfg = await writeDaemonConfig(t, {
    spool: { verifyOnStart: false },
    delivery: {
      routes: [
        { domain: 'firm.example', host: '127.0.0.1', port: notices.port, tls: 'opportunistic' },
        { domain: '*', host: '127.0.0.1', port: postfixPort, tls: 'opportunistic' },
      ],
      notifyAddress: 'ops@firm.example',
    },
    reports: { timeZone: 'UTC' },
    returnPath: { domains: [{ from: 'bank.example', returnPath: 'bounce.bank.example' }], listen: `127.0.0.1:${listenerPort}` },
  })
  const child = spawnDaemon(t, ['--config', cfg.path])
  const listening = (await child.waitFor((r) => r.msg === 'submission listening')) as unknown as { starttls: { port: number } }
  await child.waitFor((r) => r.msg === 'return-path listener up')
  const submit = await submitter(t, cfg.dataDir, listening.starttls.port)
  const to = { 'S-GONE': 'gone@customer.example', 'S-FULL': 'full@customer.example', 'S-LATER': 'later@customer.example', 'S-DEAD': 'x@dead.example' }
  for (const [id, rcpt] of Object.entries(to))
    await submit.sendMail({ from: 'statements@bank.example', to: rcpt, subject: 's', text: 'statement', headers: { 'X-Statement-ID': id } })
  for (const end = Date.now() + 90_000; notices.received.length < 4 && Date.now() < end;) await new Promise((r) => setTimeout(r, 250))
  const status = (id: string) => {
    const n = notices.received.map((m) => m.data.toString()).find((d) => d.includes(`X-Statement-ID: ${id}`)) ?? ''
    return {
      status: /^Status: (\S+)/m.exec(n)?.[1],
      diagnostic: /^Diagnostic-Code: (.*)$/m.exec(n)?.[1]?.trim(),
      category: /^X-Statement-Gateway-Category: (.*)$/m.exec(n)?.[1]?.trim(),
    }
  }
  t.match(
    status('S-GONE'),
    { status: '5.1.1', diagnostic: /^smtp; 550 5\.1\.1 /, category: 'invalid-recipient; hard' },
    'a mailbox that does not exist: 5.1.1, hard',
  )
  t.match(status('S-FULL'), { status: '5.2.2', diagnostic: /^smtp; 552 5\.2\.2 /, category: /; soft$/ }, 'a full mailbox: 5.2.2, soft')
  t.match(status('S-LATER'), { status: '4.2.2', category: /; soft$/ }, 'given up after a deferral: its 4.2.2')
  t.match(status('S-DEAD'), { status: '4.4.1', category: /; soft$/ }, 'a server not there: 4.4.1')
  t.notMatch(notices.received.map((m) => m.data.toString()).join('\n'), /Status: 5\.0\.0/, 'never the 5.0.0 the notices used to say')
  t.notMatch(notices.received.map((m) => m.data.toString()).join('\n'), /(gone|full|later)@customer\.example>:/, "the receiver's words come redacted")
})
