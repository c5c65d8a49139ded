import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { parseConfig } from '../../../firmware/config/load.ts'
import { ledgerPath } from '../../../firmware/ledger/ledger.ts'
import { summary } from '../../../firmware/ledger/queries.ts'
import { SqliteStore } from '../../../firmware/ledger/store.ts'
import { trailText } from '../../helpers/audit.ts'
import { ACCOUNT } from '../../helpers/box.ts'
import { spawnDaemon, writeDaemonConfig } from '../../helpers/daemon.ts'
import { smtpError, startReceiver, until } from '../../helpers/receiver.ts'
import { RawSmtp } from '../../helpers/smtp.ts'

/** One mail on its own connection, to one or two recipients; the queue id from a 250, or undefined. */
async function submitOne(port: number, tls: object, n: number): Promise<string | undefined> {
  try {
    const c = await RawSmtp.open(port)
    await c.handshake(tls)
    await c.authPlain(ACCOUNT.name, ACCOUNT.password)
    await c.cmd('MAIL FROM:<statements@bank.example>')
    await c.cmd(`RCPT TO:<c${n}@example.net>`)
    if (n % 4 === 0) await c.cmd(`RCPT TO:<gone${n}@example.net>`)
    await c.cmd('DATA')
    c.write(`From: statements@bank.example\r\nTo: c${n}@example.net\r\nSubject: statement ${n}\r\nX-Statement-ID: S-${n}\r\n\r\nstatement ${n}\r\n.\r\n`)
    const r = await c.reply()
    c.close()
    return r.code === 250 ? /queued as (\S+)/.exec(r.text)?.[1] : undefined
  } catch {
    return undefined
  }
}

/** What the audit trail says happened to statements: the counts the ledger must equal. */
function trailCounts(dataDir: string) {
  const records = trailText(join(dataDir, 'audit'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string; id?: string; kind?: string; outcome?: string; recipients?: { h: string }[] })
  const statements = new Map<string, number>()
  const final = new Map<string, string>()
  for (const r of records) {
    if (r.type === 'submission.accepted' && !statements.has(r.id!)) statements.set(r.id!, r.recipients!.length)
    if (r.type === 'delivery.attempt' && (r.kind ?? 'statement') === 'statement' && r.outcome !== 'deferred')
      for (const rc of r.recipients!) if (!final.has(`${r.id}/${rc.h}`)) final.set(`${r.id}/${rc.h}`, r.outcome!)
  }
  const outcomes = [...final.values()]
  return {
    submitted: statements.size,
    recipients: [...statements.values()].reduce((a, b) => a + b, 0),
    delivered: outcomes.filter((o) => o === 'delivered').length,
    bouncedHard: outcomes.filter((o) => o === 'bounced').length,
  }
}

t.test('S12/M9: kill -9 while events flow; after the restart the ledger counts what the audit trail says, nothing lost or twice', async (t) => {
  const rx = await startReceiver(t, { onRcptTo: (a) => (a.startsWith('gone') ? smtpError(550, '5.1.1 user unknown') : undefined) })
  const cfg = await writeDaemonConfig(t, {
    spool: { verifyOnStart: false },
    delivery: { routes: [{ domain: '*', host: '127.0.0.1', port: rx.port }], retrySeconds: [1] },
    reports: { timeZone: 'UTC' },
  })
  const acked = new Set<string>()
  const child = spawnDaemon(t, ['--config', cfg.path])
  const l = (await child.waitFor((r) => r.msg === 'submission listening')) as unknown as { starttls: { port: number } }
  const tls = { ca: readFileSync(join(cfg.dataDir, 'tls', 'submission.crt')), servername: 'localhost' }
  const sends = Array.from({ length: 60 }, (_, n) =>
    new Promise((r) => setTimeout(r, n * 15)).then(() => submitOne(l.starttls.port, tls, n)).then((id) => id && acked.add(id)),
  )
  // Killed while submissions, deliveries and the ledger's writes are all under way.
  // Both conditions: a mail can reach the receiver before its 250 reaches the client.
  await until(() => rx.received.length >= 10 && acked.size >= 10, 30_000)
  child.proc.kill('SIGKILL')
  await Promise.all(sends)
  await child.exited
  t.ok(acked.size >= 10, `${acked.size} mails acknowledged before or at the kill`)

  const again = spawnDaemon(t, ['--config', cfg.path])
  await again.waitFor((r) => r.msg === 'spool ready')
  const delivered = () => new Set(rx.received.map((m) => /statement (\d+)/.exec(m.data.toString())?.[1])).size
  await until(() => delivered() >= acked.size, 60_000)
  // Let the last attempts reach the trail, then stop cleanly.
  await new Promise((r) => setTimeout(r, 1500))
  again.proc.kill('SIGTERM')
  t.same(await again.exited, { code: 0, signal: null })

  const expected = trailCounts(cfg.dataDir)
  const store = new SqliteStore(ledgerPath(parseConfig({ dataDir: cfg.dataDir })), { readOnly: true })
  t.teardown(() => store.close())
  const [row] = await summary(store, {}, [])
  t.match(
    { submitted: row!.submitted, recipients: row!.recipients, delivered: row!.delivered, bouncedHard: row!.bouncedHard },
    expected,
    `the ledger equals the trail: ${JSON.stringify(expected)}`,
  )
  t.ok(expected.submitted >= acked.size, 'every acknowledged mail is in both')
  t.equal(row!.paperOwed, row!.bouncedHard, 'each hard bounce owes paper once')
})
