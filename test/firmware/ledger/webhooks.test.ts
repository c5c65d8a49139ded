import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { tempDir } from '../../helpers/box.ts'
import { spawnDaemon, submitter, writeDaemonConfig } from '../../helpers/daemon.ts'
import { run } from '../../helpers/hsm.ts'
import { smtpError, startReceiver, until } from '../../helpers/receiver.ts'
import { hookReceiver, type Hook } from '../../helpers/webhooks.ts'

const CLI = fileURLToPath(new URL('../../../provisioning/reports.ts', import.meta.url))
const AUDIT = fileURLToPath(new URL('../../../provisioning/audit.ts', import.meta.url))
const tool = (cli: string, config: string, ...args: string[]) =>
  run(process.execPath, [cli, ...args, '--config', config], { maxBuffer: 64 << 20 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  )

const MAILS = 12
/** Event ids are `<box>.<audit seq>.<n>`: their order is the trail's. */
const place = (id: string) => id.split('.').slice(-2).map(Number) as [number, number]
const before = (a: string, b: string) => {
  const [x, y] = [place(a), place(b)]
  return x[0] < y[0] || (x[0] === y[0] && x[1] < y[1])
}

t.test(
  "M9: webhooks reach the firm's HTTPS endpoint signed, at least once and in order per statement, through an outage with an alarm; the reports CLI counts the batch",
  async (t) => {
    const rx = await startReceiver(t, { onRcptTo: (a) => (a.startsWith('gone') ? smtpError(550, '5.1.1 <' + a + '>: user unknown') : undefined) })
    const hooks = await hookReceiver(t)
    const cfg = await writeDaemonConfig(t, {
      spool: { verifyOnStart: false },
      delivery: { routes: [{ domain: '*', host: '127.0.0.1', port: rx.port }], retrySeconds: [1] },
      reports: { timeZone: 'UTC', webhooks: { endpoints: [{ url: hooks.url, caFile: hooks.caFile }], retrySeconds: [1], alarmAfterSeconds: 2 } },
    })
    const child = spawnDaemon(t, ['--config', cfg.path])
    const listening = (await child.waitFor((r) => r.msg === 'submission listening')) as unknown as { starttls: { port: number } }

    // The secret the firm configures on its side, shown once by the tool (and audited).
    const secret = await tool(CLI, cfg.path, 'webhook-secret', hooks.url)
    t.equal(secret.code, 0, secret.stderr)
    t.match(secret.stdout, /^[0-9a-f]{64}\n$/)
    t.equal((await tool(CLI, cfg.path, 'webhook-secret', 'https://elsewhere.example/x')).code, 2, 'only for a configured endpoint')

    const transport = await submitter(t, cfg.dataDir, listening.starttls.port)
    for (let i = 0; i < MAILS; i++) {
      await transport.sendMail({
        from: 'statements@bank.example',
        to: i % 3 === 0 ? [`c${i}@example.net`, `gone${i}@example.net`] : [`c${i}@example.net`],
        subject: `statement ${i}`,
        text: `statement body ${i}`,
        headers: { 'X-Statement-ID': `S-${i}`, 'X-Statement-Batch': '2026-11-monthly', 'X-Statement-Class': 'securities-monthly' },
      })
    }
    // The endpoint is down: mail goes on, the alarm comes after two seconds and is in the trail.
    await until(() => rx.received.length === MAILS, 30_000)
    await child.waitFor((r) => String(r.msg).startsWith('ALARM: a webhook endpoint'), 20_000)

    await hooks.up(Buffer.from(secret.stdout.trim(), 'hex'))
    // Bounce with a 503 for a moment: those events are sent again, byte for byte.
    hooks.failing = true
    await until(() => hooks.bodies.size > 3, 20_000)
    hooks.failing = false

    const expected = new Set<string>()
    for (let i = 0; i < MAILS; i++) {
      expected.add(`S-${i}/0/accepted`).add(`S-${i}/0/delivered`)
      if (i % 3 === 0) expected.add(`S-${i}/1/accepted`).add(`S-${i}/1/bounced`).add(`S-${i}/1/paper_owed`)
    }
    const seen = () => new Set(hooks.accepted.map((h) => `${h.statementId}/${h.recipientIndex}/${h.type}`))
    await until(() => [...expected].every((k) => seen().has(k)), 30_000)
    await child.waitFor((r) => r.msg === 'webhook endpoint answers again')

    t.equal(hooks.badSignatures, 0, 'every request carried a valid signature and a re-sent event was unchanged')
    t.same(
      [...seen()].filter((k) => !expected.has(k)),
      [],
      'no event the firm did not ask for',
    )
    const byId = new Map<string, Hook>()
    for (const h of hooks.accepted) byId.set(h.id, h)
    t.ok(hooks.accepted.length >= byId.size, `${hooks.accepted.length} accepted, ${byId.size} distinct: duplicates only with the same id`)
    const perStatement = new Map<string, string[]>()
    for (const h of hooks.accepted) perStatement.set(h.queueId, [...(perStatement.get(h.queueId) ?? []), h.id])
    for (const [queueId, ids] of perStatement) {
      const firsts = ids.filter((id, i) => ids.indexOf(id) === i)
      t.ok(
        firsts.every((id, i) => i === 0 || before(firsts[i - 1]!, id)),
        `statement ${queueId}: events arrive in the trail's order`,
      )
    }
    const bounce = hooks.accepted.find((h) => h.type === 'bounced')!
    t.match(bounce, { reason: 'invalid-recipient', hard: true, status: '5.1.1', statementClass: 'securities-monthly', batch: '2026-11-monthly' })
    t.match(bounce.recipient, /^g\*+\d@example\.net$/, 'the recipient masked (first and last letter)')
    t.notMatch(JSON.stringify(hooks.accepted), /gone\d|c\d+@/, 'no address in clear in any event')

    const alarms = await tool(AUDIT, cfg.path, 'search', '--type', 'reports.webhook_failing')
    t.match(alarms.stdout, new RegExp(`"url":"${hooks.url}"`), 'the alarm is in the audit trail')
    t.match((await tool(AUDIT, cfg.path, 'search', '--type', 'reports.webhook_recovered')).stdout, /"pending":\d+/, 'and the recovery')

    // The reports CLI, against the running box's ledger.
    const summary = await tool(CLI, cfg.path, 'summary', '--format', 'json')
    t.equal(summary.code, 0, summary.stderr)
    t.match(JSON.parse(summary.stdout), [
      {
        batch: '2026-11-monthly',
        submitted: MAILS,
        recipients: MAILS + 4,
        delivered: MAILS,
        bouncedHard: 4,
        paperOwed: 4,
        pending: 0,
        bouncesByReason: { 'invalid-recipient': 4 },
        latencyMs: { p50: Number },
      },
    ])
    const table = await tool(CLI, cfg.path, 'summary', '--by', 'batch,class')
    t.match(table.stdout, /^batch\s+class\s+submitted.*\n2026-11-monthly\s+securities-monthly\s+12\s+0\s+12\s/)
    t.match(table.stdout, /2026-11-monthly \/ securities-monthly: bounced by reason: invalid-recipient 4/)
    const history = await tool(CLI, cfg.path, 'statement', 'S-3', '--format', 'json')
    t.match(JSON.parse(history.stdout), [
      { statement_id: 'S-3', state: 'delivered', mx: '127.0.0.1' },
      { statement_id: 'S-3', state: 'bounced', bounce_reason: 'invalid-recipient', paper_reason: 'bounced: invalid-recipient' },
    ])
    const out = join(tempDir(t), 'paper.csv')
    const exported = await tool(CLI, cfg.path, 'export', '--paper-owed', '--out', out)
    t.equal(exported.code, 0, exported.stderr)
    const csv = readFileSync(out, 'utf8')
    t.ok(csv.startsWith('\uFEFFbox,statement_id,queue_id,'), 'CSV with a byte order mark, for Excel')
    t.equal(csv.trimEnd().split('\r\n').length, 1 + 4, 'a header and the four owed a paper statement')
    const actions = await tool(AUDIT, cfg.path, 'search', '--type', 'admin.action')
    t.match(actions.stdout, /"action":"reports.export"[^\n]*"detail":"csv, paperOwed=true"/, 'the export is audited')
    t.match(actions.stdout, /"action":"reports.webhook-secret"/, 'so is showing a secret')
    t.equal((await tool(CLI, cfg.path, 'rebuild')).code, 1, 'no rebuild under a running box')

    child.proc.kill('SIGTERM')
    t.same(await child.exited, { code: 0, signal: null })
    const rebuilt = await tool(CLI, cfg.path, 'rebuild')
    t.equal(rebuilt.code, 0, rebuilt.stderr)
    t.same(JSON.parse((await tool(CLI, cfg.path, 'summary', '--format', 'json')).stdout), JSON.parse(summary.stdout), 'the rebuilt ledger reports the same')
  },
)
