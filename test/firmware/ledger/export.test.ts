import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync, createReadStream } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import fc from 'fast-check'
import t from 'tap'
import { parseConfig } from '../../../firmware/config/load.ts'
import { EXPORT_COLUMNS, csvField, localTimeFormatter, writeExport } from '../../../firmware/ledger/export.ts'
import { ledgerPath } from '../../../firmware/ledger/ledger.ts'
import type { LedgerRow } from '../../../firmware/ledger/queries.ts'
import { createSchema } from '../../../firmware/ledger/schema.ts'
import { SqliteStore } from '../../../firmware/ledger/store.ts'
import { tempDir } from '../../helpers/box.ts'
import { pythonEach } from '../../helpers/python.ts'

const CLI = fileURLToPath(new URL('../../../provisioning/reports.ts', import.meta.url))

const row = (over: Partial<LedgerRow>): LedgerRow => ({
  box: 'box-1',
  statement_id: 'S-1',
  queue_id: 'Q1',
  statement_class: null,
  batch: '2026-11',
  account: 'firm',
  day: '2026-11-05',
  recipient: 'c***1@example.net',
  recipient_hmac: 'ab'.repeat(32),
  state: 'delivered',
  accepted_at: Date.parse('2026-11-05T02:00:00Z'),
  cert_serial: '01',
  delivered_at: Date.parse('2026-11-05T02:00:01.250Z'),
  mx: 'mx.example.net',
  tls: 'TLSv1.3',
  deferrals: 0,
  bounced_at: null,
  bounce_reason: null,
  bounce_hard: null,
  expired_at: null,
  removed_at: null,
  opened_at: null,
  open_agent: null,
  clicked_at: null,
  read_at: null,
  paper_owed_at: null,
  paper_reason: null,
  ...over,
})

async function* each<T>(items: readonly T[]) {
  yield* items
}

async function exported(rows: readonly LedgerRow[], format: 'csv' | 'jsonl', zone = 'Asia/Taipei'): Promise<string> {
  const chunks: Buffer[] = []
  // In batches of seven, as a store yields them: value arrays in column order.
  const batches = []
  for (let i = 0; i < rows.length; i += 7) batches.push(rows.slice(i, i + 7).map((r) => EXPORT_COLUMNS.map((c) => r[c])))
  await writeExport(each(batches), format, (b) => void chunks.push(Buffer.from(b)), zone)
  return Buffer.concat(chunks).toString('utf8')
}

t.test("CSV as Python's csv module reads it: any statement id, class or batch comes back as written; formulas are defused", async (t) => {
  const text = fc.string({ unit: fc.constantFrom('a', 'Z', '0', ',', '"', '\r', '\n', ' ', '=', '+', '-', '@', '\t', '對', '帳', '單', ';', "'") })
  const samples = fc.sample(fc.tuple(text, text, fc.option(text, { nil: null })), { numRuns: 300, seed: 2026 })
  const rows = samples.map(([id, batch, cls], i) => row({ statement_id: id, batch, statement_class: cls, queue_id: `Q${i}` }))
  const csv = await exported(rows, 'csv')
  t.ok(csv.startsWith('\uFEFF'), 'a byte order mark first (Excel then reads UTF-8)')
  const [parsed] = pythonEach<string, string[][]>('import csv, io\ndef judge(text):\n    return list(csv.reader(io.StringIO(text[1:], newline="")))', [csv])
  t.same(parsed![0], [...EXPORT_COLUMNS], 'the header')
  const col = (name: string) => EXPORT_COLUMNS.indexOf(name as (typeof EXPORT_COLUMNS)[number])
  const undo = (v: string) => (v.startsWith("'") ? v.slice(1) : v)
  t.equal(parsed!.length, rows.length + 1, 'one record per row, whatever the line breaks inside fields')
  const mismatches = rows.filter((r, i) => {
    const got = parsed![i + 1]!
    return (
      undo(got[col('statement_id')]!) !== r.statement_id ||
      undo(got[col('batch')]!) !== r.batch ||
      undo(got[col('statement_class')]!) !== (r.statement_class ?? '')
    )
  })
  t.same(mismatches, [], 'every field read back as written (after the formula guard)')
  t.equal(csvField('=HYPERLINK("http://x")'), `"'=HYPERLINK(""http://x"")"`, 'a formula is text in a spreadsheet')
  t.equal(csvField('-5'), "'-5")
})

t.test("times in the firm's zone with its offset, as Python's zoneinfo gives them; JSON Lines carry the same", async (t) => {
  const zones = ['Asia/Taipei', 'UTC', 'America/St_Johns', 'Australia/Lord_Howe', 'Europe/Berlin']
  const times = fc.sample(fc.integer({ min: Date.parse('2020-01-01'), max: Date.parse('2035-12-31') }), { numRuns: 400, seed: 7 })
  // Around DST changes, to the minute.
  times.push(
    Date.parse('2026-03-29T00:59:59.999Z'),
    Date.parse('2026-03-29T01:00:00Z'),
    Date.parse('2026-10-25T00:59:59.999Z'),
    Date.parse('2026-10-25T01:00:00Z'),
  )
  const inputs = zones.flatMap((zone) => times.map((ms) => ({ zone, ms })))
  const py = pythonEach<{ zone: string; ms: number }, string>(
    'from datetime import datetime\nfrom zoneinfo import ZoneInfo\ndef judge(x):\n' +
      '    return datetime.fromtimestamp(x["ms"] / 1000, ZoneInfo(x["zone"])).isoformat(timespec="milliseconds")',
    inputs,
  )
  const formatters = new Map(zones.map((z) => [z, localTimeFormatter(z)]))
  const differ = inputs.filter((x, i) => formatters.get(x.zone)!(x.ms) !== py[i])
  t.same(differ, [], `${inputs.length} times in ${zones.length} zones, 0 differences`)

  const [line] = (await exported([row({ bounce_hard: 1, bounced_at: Date.parse('2026-11-05T16:30:00Z') })], 'jsonl')).trim().split('\n')
  t.match(JSON.parse(line!), {
    delivered_at: '2026-11-05T10:00:01.250+08:00',
    bounced_at: '2026-11-06T00:30:00.000+08:00',
    bounce_hard: true,
    opened_at: null,
    deferrals: 0,
  })
})

t.test('an export of a million rows is streamed: every line there, and the tool stays under 150 MB', async (t) => {
  const dir = tempDir(t)
  const config = parseConfig({ dataDir: dir, reports: { timeZone: 'UTC' } })
  const store = new SqliteStore(ledgerPath(config))
  await createSchema(store)
  const N = 1_000_000
  // Rows straight into the tables (the ledger's own code is tested elsewhere; this is about the stream).
  store.exec(`
    WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ${N / 2 - 1})
    INSERT INTO statements (box, id, statement_id, statement_class, batch, account, day, accepted_at, recipients)
      SELECT 'box-1', 'Q' || i, 'S-' || i, '有價證券月對帳單', '2026-11', 'firm', '2026-11-0' || (1 + i % 9), 1793000000000 + i, 2 FROM n;
    WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ${N - 1})
    INSERT INTO recipients (box, id, idx, rcpt_hash, rcpt_mask, state, day, accepted_at, delivered_at, mx, tls)
      SELECT 'box-1', 'Q' || (i / 2), i % 2, printf('%064x', i), 'c***' || (i % 10) || '@example.net', 'delivered',
             '2026-11-0' || (1 + (i / 2) % 9), 1793000000000 + i / 2, 1793000001000 + i, 'mx.example.net', 'TLSv1.3' FROM n;`)
  await store.close()
  const configFile = join(dir, 'config.json')
  writeFileSync(configFile, JSON.stringify({ dataDir: dir, reports: { timeZone: 'UTC' } }))
  const out = join(dir, 'all.jsonl')
  const probe = 'data:text/javascript,process.on("exit",()=>process.stderr.write("maxrss-kb "+process.resourceUsage().maxRSS+"\\n"))'
  const started = Date.now()
  const child = spawn(process.execPath, ['--import', probe, CLI, 'export', '--format', 'jsonl', '--out', out, '--config', configFile], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const code = await new Promise((r) => child.on('exit', r))
  const seconds = (Date.now() - started) / 1000
  t.equal(code, 0, stderr)
  let lines = 0
  let last = ''
  for await (const l of createInterface({ input: createReadStream(out) })) {
    lines++
    last = l
  }
  t.equal(lines, N, 'one line per recipient row')
  t.match(JSON.parse(last), { statement_class: '有價證券月對帳單', state: 'delivered', recipient: /^c\*\*\*\d@example\.net$/ })
  const mb = Number(/maxrss-kb (\d+)/.exec(stderr)?.[1]) / 1024
  t.ok(mb > 0 && mb < 150, `peak RSS ${mb.toFixed(0)} MB for ${N.toLocaleString('en')} rows (${seconds.toFixed(1)} s, not judged here: bench/reports.ts)`)
  t.match(readFileSync(out).subarray(0, 1).toString(), '{', 'JSON Lines have no byte order mark')
})
