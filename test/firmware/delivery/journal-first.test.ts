import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'
import { parseConfig } from '../../../firmware/config/load.ts'
import { ledgerPath } from '../../../firmware/ledger/ledger.ts'
import { summary } from '../../../firmware/ledger/queries.ts'
import { SqliteStore } from '../../../firmware/ledger/store.ts'
import { spawnDaemon, submitter, writeDaemonConfig } from '../../helpers/daemon.ts'
import { startReceiver, until } from '../../helpers/receiver.ts'

/**
 * #33 (M8, M10, S12): a recipient's outcome is in the spool's journal as soon as
 * its receiver's reply is read — before the mail's next transaction, its
 * notices, the audit trail or its final state — and a crash at any point after
 * that neither sends it again nor loses its record in the trail.
 */
const AUDIT = fileURLToPath(new URL('../../../provisioning/audit.ts', import.meta.url))
const run = promisify(execFile)

async function trail(configPath: string, ...args: string[]): Promise<Record<string, unknown>[]> {
  const { stdout } = await run(process.execPath, [AUDIT, 'search', ...args, '--config', configPath])
  return stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}

t.test('two recipients on a VERP sender: the first is journalled while the second stalls; after kill -9 only the second is sent', async (t) => {
  let offered = 0
  const rx = await startReceiver(t, { onData: () => (++offered === 2 ? 'stall' : undefined) })
  const cfg = await writeDaemonConfig(t, {
    spool: { verifyOnStart: false },
    delivery: { routes: [{ domain: '*', host: '127.0.0.1', port: rx.port }] },
    returnPath: { domains: [{ from: 'bank.example', returnPath: 'bounce.bank.example' }], listen: '127.0.0.1:0' },
  })
  let box = spawnDaemon(t, ['--config', cfg.path])
  const port = ((await box.waitFor((r) => r.msg === 'submission listening')) as unknown as { starttls: { port: number } }).starttls.port
  const smtp = await submitter(t, cfg.dataDir, port)
  const info = await smtp.sendMail({ from: 'statements@bank.example', to: ['wang@example.net', 'lin@example.net'], subject: 'statement', text: 'statement' })
  const id = /queued as (\S+)/.exec(info.response)![1]!
  await until(() => offered === 2, 30_000)
  const first = rx.received[0]!
  t.equal(rx.received.length, 1, 'the first transaction got its 250; the second is stalled')
  t.match(first.mailFrom, /@bounce\.bank\.example$/, 'a VERP sender: one transaction per recipient')
  const journal = readFileSync(join(cfg.dataDir, 'spool', 'journal'), 'latin1')
  t.match(journal, new RegExp(`^${id} P 0 0 \\S+ \\w+ 1\\.1 \\S+$`, 'm'), 'the first recipient is in the journal while the second stalls')

  box.proc.kill('SIGKILL')
  await box.exited
  box = spawnDaemon(t, ['--config', cfg.path])
  await until(() => rx.received.length === 2, 30_000)
  await box.waitFor((r) => r.msg === 'attempts a crash interrupted: their recipients are not sent again; what the trail had lost is recorded now')
  const to = rx.received.map((m) => m.rcptTo.join(','))
  t.same(to.sort(), [first.rcptTo[0], first.rcptTo[0] === 'wang@example.net' ? 'lin@example.net' : 'wang@example.net'].sort(), 'each recipient once')
  await new Promise((r) => setTimeout(r, 1000))
  t.equal(rx.received.length, 2, 'nothing more arrives')

  box.proc.kill('SIGTERM')
  await box.exited
  const attempts = (await trail(cfg.path, '--type', 'delivery.attempt', '--id', id)).filter((r) => r.outcome === 'delivered')
  t.equal(
    attempts.reduce((n, r) => n + (r.recipients as unknown[]).length, 0),
    2,
    'the trail records each recipient’s delivery once',
  )
  const verify = await run(process.execPath, [AUDIT, 'verify', '--config', cfg.path])
  t.match(verify.stdout, /OK/, 'npm run audit -- verify passes')
})

t.test('a crash between the journal and the trail: after the restart the delivery is recorded once, and not sent again', async (t) => {
  const rx = await startReceiver(t)
  const cfg = await writeDaemonConfig(t, {
    spool: { verifyOnStart: false },
    delivery: { routes: [{ domain: '*', host: '127.0.0.1', port: rx.port }] },
    // The trail writes its records in groups this far apart: the crash comes before the group with the delivery.
    audit: { flushMs: 5000 },
  })
  let box = spawnDaemon(t, ['--config', cfg.path], { env: { SG_CRASH_AT: 'delivery.after-progress' } })
  const port = ((await box.waitFor((r) => r.msg === 'submission listening')) as unknown as { starttls: { port: number } }).starttls.port
  const smtp = await submitter(t, cfg.dataDir, port)
  const info = await smtp.sendMail({ from: 'statements@bank.example', to: 'wang@example.net', subject: 'statement', text: 'statement' })
  const id = /queued as (\S+)/.exec(info.response)![1]!
  t.match(await box.exited, { signal: 'SIGKILL' }, 'the box crashed right after journalling the 250')
  t.equal(rx.received.length, 1)
  t.same(await trail(cfg.path, '--type', 'delivery.attempt', '--id', id), [], 'the trail had not written the delivery yet')

  box = spawnDaemon(t, ['--config', cfg.path])
  const replay = await box.waitFor(
    (r) => r.msg === 'attempts a crash interrupted: their recipients are not sent again; what the trail had lost is recorded now',
  )
  t.match(replay, { mails: 1, recorded: 1 })
  await until(() => readFileSync(join(cfg.dataDir, 'spool', 'journal'), 'latin1').includes(`${id} F `), 30_000)
  box.proc.kill('SIGTERM')
  await box.exited
  t.equal(rx.received.length, 1, 'not sent again')
  const records = await trail(cfg.path, '--type', 'delivery.attempt', '--id', id)
  t.equal(records.length, 1, 'the delivery is in the trail exactly once')
  t.match(records[0], { outcome: 'delivered', replayed: true, transaction: '1.1' })
  t.match(await trail(cfg.path, '--type', 'spool.final', '--id', id), [{ outcome: 'delivered' }], 'and the mail ended delivered')
  const verify = await run(process.execPath, [AUDIT, 'verify', '--config', cfg.path])
  t.match(verify.stdout, /OK/, 'npm run audit -- verify passes')
})

t.test('a crash after the spool took a mail and before the trail recorded its acceptance: the restart records it once, and the ledger counts it', async (t) => {
  const rx = await startReceiver(t)
  const cfg = await writeDaemonConfig(t, {
    spool: { verifyOnStart: false },
    delivery: { routes: [{ domain: '*', host: '127.0.0.1', port: rx.port }] },
  })
  let box = spawnDaemon(t, ['--config', cfg.path], { env: { SG_CRASH_AT: 'submission.after-spool' } })
  const port = ((await box.waitFor((r) => r.msg === 'submission listening')) as unknown as { starttls: { port: number } }).starttls.port
  const smtp = await submitter(t, cfg.dataDir, port)
  await t.rejects(
    smtp.sendMail({ from: 'statements@bank.example', to: 'wang@example.net', subject: 'statement', text: 'statement' }),
    'the client heard no 250',
  )
  t.match(await box.exited, { signal: 'SIGKILL' }, 'the box crashed with the mail in its spool')
  t.same(await trail(cfg.path, '--type', 'submission.accepted'), [], 'the trail had not written the acceptance')

  box = spawnDaemon(t, ['--config', cfg.path])
  t.match(await box.waitFor((r) => /acceptance a crash kept from the trail/.test(String(r.msg))), { mails: 1 })
  await until(() => rx.received.length === 1, 30_000)
  await new Promise((r) => setTimeout(r, 500))
  box.proc.kill('SIGTERM')
  await box.exited
  const accepted = await trail(cfg.path, '--type', 'submission.accepted')
  t.equal(accepted.length, 1, 'the acceptance is in the trail exactly once')
  t.match(accepted[0], { recovered: true, recipients: [{ m: String }] })
  const store = new SqliteStore(ledgerPath(parseConfig({ dataDir: cfg.dataDir })), { readOnly: true })
  t.teardown(() => store.close())
  const [row] = await summary(store, {}, [])
  t.match(row, { submitted: 1, recipients: 1, delivered: 1 }, 'the ledger counts the statement the customer got')
  const verify = await run(process.execPath, [AUDIT, 'verify', '--config', cfg.path])
  t.match(verify.stdout, /OK/, 'npm run audit -- verify passes')
})
