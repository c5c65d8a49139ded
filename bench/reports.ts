/**
 * The statement ledger at the size of a monthly run (issue #16).
 *
 *   npm run bench:reports [-- --statements 100000 --month 3000000 --export 1000000]
 *
 * 1. Ingest: `statements` statements' audit records in the box's real mix —
 *    policy.accepted, signing.signed, spool.queued, submission.accepted (one
 *    recipient), delivery attempts (5 % deferred once first, 2 % bounced),
 *    spool.final — through the ledger's own applier, in the transactions the
 *    ledger makes (1000 records), into SQLite with WAL. Baseline, same run:
 *    bare node:sqlite INSERTs of the rows the ledger ends with (statements,
 *    recipients), in transactions of the same size.
 * 2. Summary: a month of `month` statements (their rows and the daily counts
 *    the ledger keeps), summary() per day and per batch. Baseline, same run:
 *    the same counts by GROUP BY over the recipient rows (what it would cost
 *    without the daily counts).
 * 3. Export: `export` rows as JSON Lines through `npm run reports -- export`
 *    (a child process: its time and peak RSS). Baseline, same run: iterating
 *    the same rows with node:sqlite and nothing else, in a child process too.
 */
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parseArgs } from 'node:util'
import { DatabaseSync } from 'node:sqlite'
import { parseConfig, type Config } from '../firmware/config/load.ts'
import { hsmFromConfig } from '../firmware/keys/service.ts'
import { BOX_KEYS } from '../firmware/keys/manifest.ts'
import { LedgerApplier } from '../firmware/ledger/apply.ts'
import { applyBatch, dayFormatter, ledgerPath } from '../firmware/ledger/ledger.ts'
import { summary } from '../firmware/ledger/queries.ts'
import { createSchema } from '../firmware/ledger/schema.ts'
import { SqliteStore } from '../firmware/ledger/store.ts'

const run = promisify(execFile)
const { values } = parseArgs({
  options: {
    statements: { type: 'string', default: '100000' },
    month: { type: 'string', default: '3000000' },
    export: { type: 'string', default: '1000000' },
    dir: { type: 'string' },
  },
})
const N = Number(values.statements)
const MONTH = Number(values.month)
const EXPORT = Number(values.export)
const root = mkdtempSync(join(values.dir ?? tmpdir(), 'sg-bench-reports-'))
const say = (s: string) => process.stderr.write(`${s}\n`)
const seconds = (from: bigint) => Number(process.hrtime.bigint() - from) / 1e9

// 1. Ingest -------------------------------------------------------------------------------
function* records(n: number): Generator<{ seq: number; line: string }> {
  let seq = 0
  const t0 = Date.parse('2026-11-01T00:00:00Z')
  for (let i = 0; i < n; i++) {
    const id = `Q${i.toString(36).padStart(8, '0')}`
    const at = (k: number) => new Date(t0 + i * 20 + k).toISOString()
    const rcpt = { h: (i * 2654435761).toString(16).padStart(64, '0'), m: `c***${i % 10}@example.net` }
    const out: Record<string, unknown>[] = [
      { type: 'policy.accepted', id, account: 'firm', profile: 'securities', statementClass: 'monthly', statementId: `S-${i}`, batch: `2026-11-B${i % 4}` },
      { type: 'signing.signed', id, smime: { serial: '01ab', issuer: 'CN=Bank', algorithm: 'rsa-pkcs1-sha256' }, dkim: ['bank.example'], encrypted: false },
      { type: 'spool.queued', id, epoch: 'e1', bytes: 60000 },
      { type: 'submission.accepted', id, account: 'firm', clientAddress: '10.0.0.5', tls: 'TLSv1.3', recipients: [rcpt], bytes: 60000 },
    ]
    const attempt = (outcome: string, reply: string) => ({
      type: 'delivery.attempt',
      id,
      kind: 'statement',
      outcome,
      recipients: [rcpt],
      mx: 'mx.example.net',
      sourceIp: '192.0.2.11',
      reply,
      tls: 'TLSv1.3',
    })
    if (i % 20 === 0) out.push(attempt('deferred', '451 4.7.1 greylisted'))
    if (i % 50 === 7) out.push(attempt('bounced', '550 5.1.1 user unknown'), { type: 'spool.final', id, outcome: 'bounced', reason: '550' })
    else out.push(attempt('delivered', '250 2.0.0 ok'), { type: 'spool.final', id, outcome: 'delivered', reason: '250' })
    for (const [k, r] of out.entries()) yield { seq: ++seq, line: JSON.stringify({ seq: seq, time: at(k), ...r }) }
  }
}

async function ingest(): Promise<Record<string, number>> {
  const store = new SqliteStore(join(root, 'ingest', 'ledger.sqlite'))
  await createSchema(store)
  const applier = new LedgerApplier({
    box: 'bench',
    dayOf: dayFormatter('Asia/Taipei'),
    webhooks: [{ url: 'https://hooks.bank.example/e', events: ['bounced', 'paper_owed'] }],
  })
  let events = 0
  let batch: { seq: number; line: string }[] = []
  const started = process.hrtime.bigint()
  for (const r of records(N)) {
    batch.push(r)
    if (batch.length === 1000) {
      await applyBatch(store, applier, 'bench', batch)
      events += batch.length
      batch = []
    }
  }
  if (batch.length) await applyBatch(store, applier, 'bench', batch)
  events += batch.length
  const ledgerSeconds = seconds(started)
  const rows = await store.get<{ s: number; r: number }>('SELECT (SELECT COUNT(*) FROM statements) AS s, (SELECT COUNT(*) FROM recipients) AS r')
  await store.close()

  // Baseline: the rows the ledger ends with, inserted bare.
  const db = new DatabaseSync(join(root, 'bare.sqlite'))
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL')
  db.exec(
    'CREATE TABLE statements (box TEXT, id TEXT, statement_id TEXT, statement_class TEXT, batch TEXT, account TEXT, day TEXT, ' +
      'accepted_at INT8, bytes INT8, recipients INT8, cert_serial TEXT, PRIMARY KEY (box, id));' +
      'CREATE TABLE recipients (box TEXT, id TEXT, idx INT8, rcpt_hash TEXT, rcpt_mask TEXT, state TEXT, day TEXT, ' +
      'accepted_at INT8, delivered_at INT8, mx TEXT, tls TEXT, PRIMARY KEY (box, id, idx));',
  )
  const s = db.prepare('INSERT INTO statements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
  const r = db.prepare('INSERT INTO recipients VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
  const bareStarted = process.hrtime.bigint()
  const perTx = Math.round(1000 / 7) // the same transactions: ~1000 records are ~140 statements
  for (let i = 0; i < N; i += perTx) {
    db.exec('BEGIN')
    for (let j = i; j < Math.min(N, i + perTx); j++) {
      const id = `Q${j.toString(36).padStart(8, '0')}`
      s.run('bench', id, `S-${j}`, 'monthly', `2026-11-B${j % 4}`, 'firm', '2026-11-01', j, 60000, 1, '01ab')
      r.run(
        'bench',
        id,
        0,
        (j * 2654435761).toString(16).padStart(64, '0'),
        `c***${j % 10}@example.net`,
        'delivered',
        '2026-11-01',
        j,
        j + 1,
        'mx.example.net',
        'TLSv1.3',
      )
    }
    db.exec('COMMIT')
  }
  const bareSeconds = seconds(bareStarted)
  db.close()
  return {
    statements: N,
    events,
    ledgerRows: Number(rows!.s) + Number(rows!.r),
    ledgerSeconds: Number(ledgerSeconds.toFixed(2)),
    eventsPerSecond: Math.round(events / ledgerSeconds),
    baselineRowsPerSecond: Math.round((2 * N) / bareSeconds),
    baselineEventsEquivalentPerSecond: Math.round(events / bareSeconds),
    ratioToBaseline: Number((bareSeconds / ledgerSeconds).toFixed(3)),
  }
}

/** Statements and recipients as the ledger keeps them, and the daily counts computed from those rows. */
function fillMonth(store: SqliteStore): void {
  // Statements and recipients as the ledger keeps them (one recipient each), spread over 30 days,
  // 4 batches, 2 accounts, 3 classes; 2 % bounced with a reason; then the daily counts the ledger
  // keeps alongside, computed from those rows.
  store.exec(`
    WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ${MONTH - 1})
    INSERT INTO statements (box, id, statement_id, statement_class, batch, account, day, accepted_at, bytes, recipients, cert_serial)
      SELECT 'bench', 'Q' || i, 'S-' || i, 'class-' || (i % 3), '2026-11-B' || (i % 4), 'firm-' || (i % 2),
             printf('2026-11-%02d', 1 + i % 30), 1793500000000 + i * 800, 60000, 1, '01ab' FROM n;
    INSERT INTO recipients (box, id, idx, rcpt_hash, rcpt_mask, state, day, accepted_at, delivered_at, mx, tls,
                            bounced_at, bounce_reason, bounce_hard, paper_owed_at, paper_reason)
      SELECT box, id, 0, printf('%064x', accepted_at), 'c***@example.net',
             CASE WHEN accepted_at % 50 = 7 THEN 'bounced' ELSE 'delivered' END, day, accepted_at,
             CASE WHEN accepted_at % 50 = 7 THEN NULL ELSE accepted_at + 2000 + accepted_at % 5000 END, 'mx.example.net', 'TLSv1.3',
             CASE WHEN accepted_at % 50 = 7 THEN accepted_at + 3000 END, CASE WHEN accepted_at % 50 = 7 THEN 'invalid-recipient' END,
             CASE WHEN accepted_at % 50 = 7 THEN 1 END, CASE WHEN accepted_at % 50 = 7 THEN accepted_at + 3000 END,
             CASE WHEN accepted_at % 50 = 7 THEN 'bounced: invalid-recipient' END
      FROM statements;
    INSERT INTO daily (box, day, batch, account, class, submitted, recipients, delivered, bounced_hard, paper_owed)
      SELECT s.box, s.day, s.batch, s.account, s.statement_class, COUNT(*), COUNT(*),
             SUM(r.state = 'delivered'), SUM(r.state = 'bounced'), SUM(r.state = 'bounced')
      FROM statements s JOIN recipients r ON r.box = s.box AND r.id = s.id GROUP BY 1, 2, 3, 4, 5;
    INSERT INTO daily_detail (box, day, batch, account, class, kind, key, n)
      SELECT s.box, s.day, s.batch, s.account, s.statement_class, 'bounce', r.bounce_reason, COUNT(*)
      FROM statements s JOIN recipients r ON r.box = s.box AND r.id = s.id WHERE r.bounce_reason IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 7;
    INSERT INTO daily_detail (box, day, batch, account, class, kind, key, n)
      SELECT s.box, s.day, s.batch, s.account, s.statement_class, 'latency', CAST(log10(r.delivered_at - r.accepted_at) * 10 AS INTEGER), COUNT(*)
      FROM statements s JOIN recipients r ON r.box = s.box AND r.id = s.id WHERE r.delivered_at IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 7;`)
}

/** The month exported through the CLI with its peak RSS, against a bare iteration of the same rows. */
async function exportRun(config: Config, dataDir: string) {
  // Export through the CLI, with its peak RSS; the box's keys exist so the export is audited as on a box.
  const hsm = hsmFromConfig(config, { now: () => Date.now() })
  await hsm.open()
  await hsm.ensureKeys(BOX_KEYS)
  await hsm.close()
  const configFile = join(dataDir, 'config.json')
  writeFileSync(configFile, JSON.stringify({ dataDir, reports: { timeZone: 'Asia/Taipei' } }))
  const probe = 'data:text/javascript,process.on("exit",()=>process.stderr.write("maxrss-kb "+process.resourceUsage().maxRSS+"\\n"))'
  const cli = join(import.meta.dirname, '..', 'provisioning', 'reports.ts')
  const day = (k: number) => `2026-11-${String(k).padStart(2, '0')}`
  const lastDay = Math.max(1, Math.min(30, Math.round((30 * EXPORT) / MONTH)))
  const out = join(root, 'export.jsonl')
  const exportStarted = process.hrtime.bigint()
  const r = await run(process.execPath, [
    '--import',
    probe,
    cli,
    'export',
    '--format',
    'jsonl',
    '--from',
    day(1),
    '--to',
    day(lastDay),
    '--out',
    out,
    '--config',
    configFile,
  ])
  const exportSeconds = seconds(exportStarted)
  const rows = Number(/exported ([\d,]+) rows/.exec(r.stderr)![1]!.replaceAll(',', ''))
  const rssMb = Number(/maxrss-kb (\d+)/.exec(r.stderr)![1]) / 1024
  const iterate =
    `const { DatabaseSync } = require('node:sqlite'); const db = new DatabaseSync(${JSON.stringify(ledgerPath(config))}, { readOnly: true });` +
    `let n = 0; for (const r of db.prepare("SELECT r.*, s.statement_id, s.batch FROM recipients r JOIN statements s ` +
    `ON s.box = r.box AND s.id = r.id WHERE r.day BETWEEN '${day(1)}' AND '${day(lastDay)}'").iterate()) n++;` +
    `process.stderr.write('maxrss-kb ' + process.resourceUsage().maxRSS + ' rows ' + n + '\\n')`
  const bareStarted = process.hrtime.bigint()
  const b = await run(process.execPath, ['-e', iterate])
  const bareSeconds = seconds(bareStarted)
  return { rows, exportSeconds, rssMb, bareSeconds, b }
}

// 2. and 3. A month of statements ---------------------------------------------------------
async function month(): Promise<{ summary: Record<string, number>; exported: Record<string, number> }> {
  const dataDir = join(root, 'month')
  const config = parseConfig({ dataDir, reports: { timeZone: 'Asia/Taipei' } })
  const store = new SqliteStore(ledgerPath(config))
  await createSchema(store)
  const filled = process.hrtime.bigint()
  fillMonth(store)
  say(`a month of ${MONTH.toLocaleString('en')} statements written in ${seconds(filled).toFixed(1)} s`)

  const time = async (f: () => Promise<unknown>) => {
    const runs: number[] = []
    for (let i = 0; i < 5; i++) {
      const t = process.hrtime.bigint()
      await f()
      runs.push(seconds(t))
    }
    return [...runs].sort((a, b) => a - b)[2]!
  }
  let byDay: Awaited<ReturnType<typeof summary>> = []
  const perDay = await time(async () => (byDay = await summary(store, { from: '2026-11-01', to: '2026-11-30' }, ['day'])))
  const perBatch = await time(() => summary(store, { from: '2026-11-01', to: '2026-11-30' }, ['batch']))
  const naive = await time(() =>
    store.all(
      "SELECT r.day, COUNT(*), SUM(r.state = 'delivered'), SUM(r.state = 'bounced') FROM recipients r JOIN statements s ON s.box = r.box AND s.id = r.id " +
        "WHERE r.day BETWEEN '2026-11-01' AND '2026-11-30' GROUP BY r.day",
    ),
  )
  const submitted = byDay.reduce((a, r) => a + r.submitted, 0)
  await store.close()

  const { rows, exportSeconds, rssMb, bareSeconds, b } = await exportRun(config, dataDir)
  return {
    summary: {
      statements: submitted,
      dailyRows: byDay.length,
      perDaySeconds: Number(perDay.toFixed(3)),
      perBatchSeconds: Number(perBatch.toFixed(3)),
      baselineGroupBySeconds: Number(naive.toFixed(2)),
      speedupOverBaseline: Math.round(naive / perDay),
    },
    exported: {
      rows,
      seconds: Number(exportSeconds.toFixed(2)),
      peakRssMb: Math.round(rssMb),
      baselineIterateSeconds: Number(bareSeconds.toFixed(2)),
      baselineIterateRssMb: Math.round(Number(/maxrss-kb (\d+)/.exec(b.stderr)![1]) / 1024),
      ratioToBaseline: Number((bareSeconds / exportSeconds).toFixed(3)),
    },
  }
}

const ingestResult = await ingest()
say(JSON.stringify(ingestResult))
const monthResult = await month()
say(JSON.stringify(monthResult))
const result = {
  date: new Date().toISOString().slice(0, 10),
  machine: `${cpus().length} cores, ${cpus()[0]?.model}`,
  node: process.version,
  ingest: ingestResult,
  ...monthResult,
}
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true })
writeFileSync(join(import.meta.dirname, 'results', 'reports.json'), `${JSON.stringify(result, null, 2)}\n`)
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
rmSync(root, { recursive: true, force: true })
