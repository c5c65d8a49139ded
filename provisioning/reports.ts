import { closeSync, existsSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { systemClock } from '../hal/clock.ts'
import type { Hsm } from '../hal/hsm/index.ts'
import { recordAdminAction, type AdminAction } from '../firmware/control/admin-record.ts'
import { boxRunning } from '../firmware/control/server.ts'
import { csvField, fileSink, localTimeFormatter, paperCells, streamSink, writeExport, type ExportFormat } from '../firmware/ledger/export.ts'
import { Ledger, ledgerPath, openLedgerStore } from '../firmware/ledger/ledger.ts'
import {
  countRows,
  exportRows,
  GROUPS,
  PAPER_FIELDS,
  paperOwedRows,
  statementHistory,
  summary,
  type GroupKey,
  type ReportFilter,
  type SummaryRow,
} from '../firmware/ledger/queries.ts'
import type { LedgerStore } from '../firmware/ledger/store.ts'
import { webhookSecret } from '../firmware/ledger/webhooks.ts'
import { failer, printHelp, quietWhenStdoutCloses, textTable, toolConfig } from './cli.ts'
import { withToolHsm } from './tool-hsm.ts'
import { Progress } from './progress.ts'

const USAGE = `usage: npm run reports -- <command> [--config FILE] [options]

  summary [--by batch|day|account|class[,…]] [filters] [--format table|json]
      Counts per group (M9): submitted, refused, delivered, deferred, bounced
      (hard/soft, by reason), expired, opened, clicked, read, paper owed, and
      delivery latency p50/p95/p99. Default --by batch.
  statement ID [--format table|json]
      One statement's whole history by the firm's statement id (X-Statement-ID):
      per recipient its state, delivery, bounce, opens and clicks, read, unread
      (no read receipt in time, M11) and paper owed.
  export [--format csv|jsonl] [--out FILE] [filters] [--paper-owed]
      One line per statement and recipient, streamed: CSV (UTF-8 with BOM, for
      Excel) or JSON Lines. To standard output unless --out. Recorded in the
      audit trail.
  paper --month YYYY-MM [--account NAME] [--format table|csv|json] [--out FILE]
      The paper-owed list (M8, M11): every recipient of the month's statements
      (by submission day) who must be sent the statement on paper, with why
      (bounce category, expired, removed, no read receipt) and when. Per
      account, in the order they became owed. Recorded in the audit trail.
  rebuild
      Makes the ledger again from the audit trail (the box must be stopped).
  webhook-secret URL
      Prints the secret the firm's endpoint URL checks signatures with
      (derived in the HSM). Recorded in the audit trail.

filters: --from DAY --to DAY (submission days, YYYY-MM-DD, in reports.timeZone)
         --account NAME --batch BATCH --class CLASS
Recipients appear masked and as their HMAC (npm run audit -- hash ADDRESS), never in clear.
`

const { values, positionals } = parseArgs({
  args: process.argv.slice(2),
  options: {
    config: { type: 'string' },
    from: { type: 'string' },
    to: { type: 'string' },
    account: { type: 'string' },
    batch: { type: 'string' },
    class: { type: 'string' },
    by: { type: 'string' },
    format: { type: 'string' },
    out: { type: 'string' },
    'paper-owed': { type: 'boolean' },
    month: { type: 'string' },
    help: { type: 'boolean' },
  },
  allowPositionals: true,
})
if (values.help) printHelp(USAGE, values.config)
quietWhenStdoutCloses()

const fail: (message: string, code?: number) => never = failer('reports')
const config = toolConfig('reports', values.config)
const DAY = /^\d{4}-\d{2}-\d{2}$/
for (const d of [values.from, values.to]) if (d !== undefined && !DAY.test(d)) fail(`"${d}" is not a day (YYYY-MM-DD)`, 2)
const filter: ReportFilter = {
  from: values.from,
  to: values.to,
  account: values.account,
  batch: values.batch,
  statementClass: values.class,
  paperOwed: values['paper-owed'],
}
const filterText = Object.entries(filter)
  .filter(([, v]) => v !== undefined)
  .map(([k, v]) => `${k}=${String(v)}`)
  .join(' ')

/** The ledger for reading; a box that never kept one says so rather than making an empty file. */
async function store(): Promise<LedgerStore> {
  if (!config.reports.enabled) fail('reports are off (reports.enabled is false): no ledger is kept')
  if (!config.reports.postgres.url && !existsSync(ledgerPath(config)))
    fail(`no ledger at ${ledgerPath(config)} yet: start the box (npm start), or make it from the audit trail with: npm run reports -- rebuild`)
  try {
    return await openLedgerStore(config, { readOnly: true })
  } catch (err) {
    return fail(`cannot open the ledger: ${(err as Error).message}`)
  }
}

const withHsm = <T>(fn: (hsm: Hsm) => Promise<T>): Promise<T> => withToolHsm(config, fail, fn)

/** Every admin action audited: through the running box, or the trail itself when none runs. */
function audited(a: AdminAction): Promise<unknown> {
  return withHsm((hsm) => recordAdminAction(config, hsm, systemClock, a))
}

function format<T extends string>(allowed: readonly T[], fallback: T): T {
  const f = (values.format ?? fallback) as T
  if (!allowed.includes(f)) fail(`--format must be one of ${allowed.join(', ')}`, 2)
  return f
}

const n = (v: number) => v.toLocaleString('en')

/** The summary's count columns, in order: right-aligned; its group columns are text, left-aligned under their headers. */
const COUNT_COLUMNS = [
  'submitted',
  'refused',
  'delivered',
  'deferred',
  'bounced',
  'expired',
  'pending',
  'opened',
  'clicked',
  'read',
  'paper owed',
  'p50',
  'p95',
  'p99',
]
const NUMERIC = new Set(COUNT_COLUMNS)
const table = (rows: readonly Record<string, string>[], columns: readonly string[]) => textTable(rows, columns, NUMERIC)

function summaryText(rows: readonly SummaryRow[], by: readonly GroupKey[]): string {
  if (rows.length === 0) return `no statements${filterText ? ` for ${filterText}` : ''}\n`
  const cols = [...by, ...COUNT_COLUMNS]
  const ms = (v: number | undefined) => (v === undefined ? '-' : v < 1000 ? `${v} ms` : `${(v / 1000).toFixed(1)} s`)
  const cells = rows.map((r) => ({
    ...Object.fromEntries(by.map((k) => [k, r[k] || '(none)'])),
    submitted: n(r.submitted),
    refused: n(r.refused),
    delivered: n(r.delivered),
    deferred: n(r.deferred),
    bounced: `${n(r.bouncedHard + r.bouncedSoft)}${r.bouncedSoft ? ` (${n(r.bouncedSoft)} soft)` : ''}`,
    expired: n(r.expired),
    pending: n(r.pending),
    opened: `${n(r.opened)}${r.openedByProxy ? ` (+${n(r.openedByProxy)} proxy)` : ''}`,
    clicked: n(r.clicked),
    read: n(r.read),
    'paper owed': n(r.paperOwed),
    p50: ms(r.latencyMs?.p50),
    p95: ms(r.latencyMs?.p95),
    p99: ms(r.latencyMs?.p99),
  }))
  let out = `${table(cells, by.length ? cols : cols.slice(0))}\n`
  for (const r of rows) {
    const label = by.map((k) => r[k]).join(' / ') || 'all'
    const bounces = Object.entries(r.bouncesByReason).sort((a, b) => b[1] - a[1])
    const refusals = Object.entries(r.refusedByCode).sort((a, b) => b[1] - a[1])
    if (bounces.length) out += `${label}: bounced by reason: ${bounces.map(([k, v]) => `${k} ${n(v)}`).join(', ')}\n`
    if (refusals.length) out += `${label}: refused by rule: ${refusals.map(([k, v]) => `${k} ${n(v)}`).join(', ')}\n`
  }
  return out
}

switch (positionals[0]) {
  case 'summary': {
    const by = (values.by ?? 'batch').split(',').filter(Boolean) as GroupKey[]
    for (const g of by) if (!GROUPS.includes(g)) fail(`--by takes ${GROUPS.join(', ')} (comma-separated)`, 2)
    const f = format(['table', 'json'], 'table')
    const s = await store()
    const rows = await summary(s, filter, by)
    await s.close()
    process.stdout.write(f === 'json' ? `${JSON.stringify(rows, null, 2)}\n` : summaryText(rows, by))
    break
  }
  case 'statement': {
    const id = positionals[1] ?? fail('statement needs the statement id', 2)
    const f = format(['table', 'json'], 'table')
    const s = await store()
    const rows = await statementHistory(s, id)
    await s.close()
    await audited({ action: 'reports.statement', target: id, outcome: 'ok', detail: `${rows.length} recipient row(s)` })
    if (rows.length === 0) fail(`no statement with id ${id} in the ledger`)
    if (f === 'json') process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`)
    else {
      const local = localTimeFormatter(config.reports.timeZone)
      const t = (v: number | null) => (v === null ? '' : local(v).slice(0, 19).replace('T', ' '))
      const cells = rows.map((r) => ({
        queue: r.queue_id,
        recipient: r.recipient,
        state: r.state,
        accepted: t(r.accepted_at),
        delivered: t(r.delivered_at),
        bounced: r.bounced_at === null ? '' : `${t(r.bounced_at)} ${r.bounce_reason}${r.bounce_hard ? ' (hard)' : ''}`,
        deferrals: String(r.deferrals),
        opened: t(r.opened_at),
        clicked: t(r.clicked_at),
        // M11: read (the evidence its class counts), unread (its wait ran out), and what is owed on paper and why.
        read: t(r.read_at),
        unread: r.paper_reason?.startsWith('no read receipt') ? 'yes' : '',
        'paper owed': r.paper_owed_at === null ? '' : `${t(r.paper_owed_at)} ${r.paper_reason ?? ''}`,
      }))
      process.stdout.write(
        `statement ${id} (times in ${config.reports.timeZone}): ${rows.length} recipient(s); ` +
          `class ${rows[0]!.statement_class ?? '-'}, batch ${rows[0]!.batch}, ` +
          `certificate ${rows[0]!.cert_serial ?? '-'}\n`,
      )
      process.stdout.write(`${textTable(cells, Object.keys(cells[0]!), new Set(['deferrals']))}\n`)
    }
    break
  }
  case 'export': {
    const f = format<ExportFormat>(['csv', 'jsonl'], 'csv')
    const s = await store()
    // Recorded before a row is written: no export happens unaudited.
    await audited({ action: 'reports.export', target: values.out ?? 'stdout', outcome: 'ok', detail: `${f}${filterText ? `, ${filterText}` : ''}` })
    const progress = new Progress('export', 'rows')
    if (progress.shown) progress.total = await countRows(s, filter)
    // A file is written beside its name and renamed when whole: no half export under the real name.
    const partial = values.out ? `${values.out}.partial` : undefined
    const fd = partial ? openSync(partial, 'w', 0o600) : undefined
    const rows = await (async () => {
      try {
        const sink = fd === undefined ? streamSink(process.stdout) : fileSink(fd)
        const written = await writeExport(exportRows(s, filter), f, sink, config.reports.timeZone, (k) => progress.update(k))
        progress.done(written)
        if (fd !== undefined) fsyncSync(fd)
        return written
      } finally {
        if (fd !== undefined) closeSync(fd)
        await s.close()
      }
    })()
    if (partial) renameSync(partial, values.out!)
    process.stderr.write(`reports: exported ${n(rows)} rows${values.out ? ` to ${values.out}` : ''}\n`)
    break
  }
  case 'paper': {
    const month = values.month ?? fail('paper needs --month YYYY-MM', 2)
    if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(month)) fail(`"${month}" is not a month (YYYY-MM)`, 2)
    const f = format(['table', 'csv', 'json'], 'table')
    const s = await store()
    await audited({ action: 'reports.paper', target: month, outcome: 'ok', detail: `${f}${values.account ? `, account ${values.account}` : ''}` })
    const local = localTimeFormatter(config.reports.timeZone)
    const TIMES = new Set<string>(['submitted_at', 'delivered_at', 'failed_at', 'paper_owed_at'])
    const lines: string[][] = []
    const partial = values.out ? `${values.out}.partial` : undefined
    const fd = partial ? openSync(partial, 'w', 0o600) : undefined
    const write = (text: string) => (fd === undefined ? process.stdout.write(text) : writeSync(fd, text))
    let count = 0
    try {
      if (f === 'csv') write(`\ufeff${PAPER_FIELDS.join(',')}\r\n`)
      if (f === 'json') write('[')
      for await (const batch of paperOwedRows(s, month, values.account)) {
        for (const row of batch) {
          const cells = paperCells(row, local)
          if (f === 'csv') write(`${cells.map(csvField).join(',')}\r\n`)
          else if (f === 'json')
            write(`${count ? ',' : ''}\n${JSON.stringify(Object.fromEntries(PAPER_FIELDS.map((k, i) => [k, row[i] === null ? null : cells[i]])))}`)
          else lines.push(cells)
          count++
        }
      }
      if (f === 'json') write(count ? '\n]\n' : ']\n')
      if (fd !== undefined) fsyncSync(fd)
    } finally {
      if (fd !== undefined) closeSync(fd)
      await s.close()
    }
    if (partial) renameSync(partial, values.out!)
    if (f === 'table') {
      const cols = ['account', 'statement_id', 'recipient', 'reason', 'delivered_at', 'failed_at', 'paper_owed_at']
      const rows = lines.map((cells) =>
        Object.fromEntries(cells.map((v, i) => [PAPER_FIELDS[i]!, TIMES.has(PAPER_FIELDS[i]!) ? v.slice(0, 19).replace('T', ' ') : v])),
      )
      process.stdout.write(`paper owed for statements submitted in ${month} (times in ${config.reports.timeZone}): ${n(count)}\n`)
      if (count) process.stdout.write(`${textTable(rows, cols)}\n`)
    } else process.stderr.write(`reports: ${n(count)} recipient(s) owed paper for ${month}${values.out ? `, written to ${values.out}` : ''}\n`)
    break
  }
  case 'rebuild': {
    if (await boxRunning(config)) fail('the box is running and owns the ledger: stop it first (the ledger catches up from the trail by itself at start)')
    const progress = new Progress('rebuild', 'records')
    const records = await Ledger.rebuild(config, join(config.dataDir, 'audit'), (k) => progress.update(k))
    progress.done(records)
    await audited({
      action: 'reports.rebuild',
      target: config.reports.postgres.url ? 'postgres' : ledgerPath(config),
      outcome: 'ok',
      detail: `${records} records applied`,
    })
    process.stdout.write(`rebuilt the ledger from ${n(records)} audit records\n`)
    break
  }
  case 'webhook-secret': {
    const url = positionals[1] ?? fail('webhook-secret needs the endpoint URL', 2)
    if (!config.reports.webhooks.endpoints.some((e) => e.url === url))
      fail(`${url} is not a configured endpoint (reports.webhooks.endpoints); the secret is bound to the exact URL`, 2)
    const secret = await withHsm((hsm) => webhookSecret(hsm, url))
    await audited({ action: 'reports.webhook-secret', target: url, outcome: 'ok', detail: 'the endpoint secret was shown' })
    process.stdout.write(`${secret.toString('hex')}\n`)
    break
  }
  default:
    process.stderr.write(USAGE)
    process.exit(2)
}
