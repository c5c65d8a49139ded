/**
 * The audit trail at the rate of a monthly run (issue: Tamper-evident audit trail).
 *
 *   npm run bench:audit [-- --statements 50000 --records 10000000]
 *
 * 1. Append: `statements` statement lifecycles of 7 events each (submission
 *    accepted with a recipient, policy, signed, queued, delivery attempt with
 *    the recipient, final, shredded) through AuditTrail on a SoftHSM token,
 *    with the default checkpoints (every 1000 records or 60 s, ECDSA in the
 *    HSM) and one recipient HMAC in the HSM per statement. Baseline, same run:
 *    the same number of lines written with the same group fsync and nothing
 *    else (no hashing, no HSM).
 * 2. Verify and search: a trail of `records` records over ten days (nine compressed),
 *    written by AuditTrail, checked by verifyTrail, and searched for one
 *    message id. Baseline, same run: reading the same segments line by line
 *    without checking anything.
 */
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { AuditTrail } from '../firmware/audit/trail.ts'
import { CHECKPOINT_KEY_LABEL } from '../firmware/keys/labels.ts'
import { listSegments, readLines } from '../firmware/audit/segments.ts'
import { searchTrail } from '../firmware/audit/search.ts'
import { verifyTrail } from '../firmware/audit/verify.ts'
import { parseConfig } from '../firmware/config/load.ts'
import type { BoxEvent } from '../firmware/events.ts'
import { BOX_KEYS } from '../firmware/keys/manifest.ts'
import { benchHsm } from './host.ts'

const { values } = parseArgs({
  options: { statements: { type: 'string', default: '50000' }, records: { type: 'string', default: '10000000' }, dir: { type: 'string' } },
})
const statements = Number(values.statements)
const records = Number(values.records)
const root = mkdtempSync(join(values.dir ?? tmpdir(), 'sg-bench-audit-'))
const log = pino({ level: 'silent' })
const hsm = await benchHsm(join(root, 'hsm'))
await hsm.ensureKeys(BOX_KEYS)
const say = (s: string) => process.stderr.write(`${s}\n`)

function lifecycle(i: number): BoxEvent[] {
  const id = `Q${i.toString(36).padStart(10, '0')}`
  const recipients = [`customer${i}@example.com`]
  return [
    { type: 'submission.accepted', id, account: 'statements', clientAddress: '10.0.0.5', tls: 'TLSv1.3', recipients, bytes: 61_440 },
    { type: 'policy.accepted', id, account: 'statements', profile: 'securities', statementClass: 'monthly', statementId: `S-2026-11-${i}` },
    {
      type: 'signing.signed',
      id,
      smime: { serial: '03E8', issuer: 'CN=TWCA Test, O=TWCA, C=TW', algorithm: 'rsa-pkcs1-sha256' },
      dkim: ['bank.example/sg1 rsa-sha256'],
      encrypted: false,
    },
    { type: 'spool.queued', id, epoch: 'mhx9k2', bytes: 64_000 },
    {
      type: 'delivery.attempt',
      id,
      kind: 'statement',
      outcome: 'delivered',
      recipients,
      mx: 'mx1.example.com',
      sourceIp: '192.0.2.11',
      reply: '250 2.0.0 Ok: queued as 4XyZ',
      tls: 'TLSv1.3',
    },
    { type: 'spool.final', id, outcome: 'delivered', reason: '250 2.0.0 Ok' },
    { type: 'spool.record_shredded', id },
  ]
}

// 1. Append rate.
const appendDir = join(root, 'append')
const clock = { now: () => Date.now() }
const config = parseConfig({ dataDir: appendDir })
const trail = new AuditTrail({ config, log, hsm, clock })
await trail.start()
say(`append: ${statements} statements × 7 events`)
let t0 = process.hrtime.bigint()
const BATCH = 1000
for (let i = 0; i < statements; i += BATCH) {
  for (let j = i; j < Math.min(statements, i + BATCH); j++) for (const e of lifecycle(j)) trail.emit(e)
  await trail.flush()
}
await trail.checkpoint()
const appendSeconds = Number(process.hrtime.bigint() - t0) / 1e9
const appended = trail.head.seq
await trail.stop()

// Baseline: the same number of lines of the same size, same group fsync, nothing else.
const sample = JSON.stringify({ seq: 1, prev: '0'.repeat(64), time: new Date().toISOString(), ...lifecycle(1)[4] })
const fh = await open(join(root, 'baseline.jsonl'), 'a')
t0 = process.hrtime.bigint()
for (let i = 0; i < appended; i += BATCH * 7) {
  await fh.write(`${sample}\n`.repeat(Math.min(BATCH * 7, appended - i)))
  await fh.datasync()
}
const baselineSeconds = Number(process.hrtime.bigint() - t0) / 1e9
await fh.close()
const append = {
  records: appended,
  recordsPerSecond: Math.round(appended / appendSeconds),
  statementsPerSecond: Math.round(statements / appendSeconds),
  baselineRecordsPerSecond: Math.round(appended / baselineSeconds),
  ratioToBaseline: Number((baselineSeconds / appendSeconds).toFixed(3)),
  neededForMonthlyRun: 600 * 7,
}
say(JSON.stringify(append))

// 2. Verification of a large trail, over ten days.
const bigDir = join(root, 'big')
const day0 = Date.parse('2026-11-01T00:00:00Z')
const bigClock = { value: day0, now: () => bigClock.value }
const big = new AuditTrail({ config: parseConfig({ dataDir: bigDir, audit: { checkpointEvery: 1000 } }), log, hsm, clock: bigClock })
await big.start()
say(`writing ${records.toLocaleString('en')} records over ten days`)
t0 = process.hrtime.bigint()
const perDay = Math.ceil(records / 10)
for (let n = 0; n < records; n += 10_000) {
  bigClock.value = day0 + Math.floor(n / perDay) * 86_400_000 + (n % perDay)
  for (let k = 0; k < 10_000 && n + k < records; k++)
    big.emit({ type: 'spool.queued', id: `Q${(n + k).toString(36).padStart(10, '0')}`, epoch: 'mhx9k2', bytes: 64_000 })
  await big.flush()
  if (n % 1_000_000 === 0 && n) say(`  ${n.toLocaleString('en')}`)
}
await big.stop()
const writeSeconds = Number(process.hrtime.bigint() - t0) / 1e9
const segments = await listSegments(join(bigDir, 'audit'))

t0 = process.hrtime.bigint()
let lines = 0
for (const s of segments) for await (const l of readLines(s)) if (l.complete) lines++
const readSeconds = Number(process.hrtime.bigint() - t0) / 1e9

say('verifying')
t0 = process.hrtime.bigint()
const result = await verifyTrail(join(bigDir, 'audit'), await hsm.keys.publicKey(CHECKPOINT_KEY_LABEL), {
  onProgress: (n) => n % 2_000_000 === 0 && say(`  ${n.toLocaleString('en')} checked`),
})
const verifySeconds = Number(process.hrtime.bigint() - t0) / 1e9
if (!result.ok) throw new Error(`verification failed: ${JSON.stringify(result.problem)}`)
// Search: one message id across all ten days, with the finished days' filters as the box
// leaves them, and (baseline) with the filters moved away, which reads every day.
const needle = `Q${Math.floor(records * 0.77)
  .toString(36)
  .padStart(10, '0')}`
const auditDir = join(bigDir, 'audit')
const search = async () => {
  const t = process.hrtime.bigint()
  let hits = 0
  for await (const r of searchTrail(auditDir, { id: needle })) if (r.id === needle) hits++
  if (hits !== 1) throw new Error(`search found ${hits} records for ${needle}`)
  return Number(process.hrtime.bigint() - t) / 1e9
}
const filters = readdirSync(auditDir).filter((n) => n.endsWith('.bloom'))
const searchSeconds = await search()
const aside = join(root, 'filters-aside')
mkdirSync(aside)
for (const f of filters) renameSync(join(auditDir, f), join(aside, f))
const scanSeconds = await search()
for (const f of filters) renameSync(join(aside, f), join(auditDir, f))

const verify = {
  records: result.records,
  segments: segments.length,
  compressedSegments: segments.filter((s) => s.gz).length,
  checkpoints: result.checkpoints,
  writeRecordsPerSecond: Math.round(records / writeSeconds),
  verifySeconds: Number(verifySeconds.toFixed(1)),
  verifyRecordsPerSecond: Math.round(result.records / verifySeconds),
  baselineReadRecordsPerSecond: Math.round(lines / readSeconds),
  ratioToBaseline: Number((readSeconds / verifySeconds).toFixed(3)),
  dayFilters: filters.length,
  searchOneIdSeconds: Number(searchSeconds.toFixed(2)),
  searchOneIdWithoutFiltersSeconds: Number(scanSeconds.toFixed(1)),
  searchSpeedupFromFilters: Number((scanSeconds / searchSeconds).toFixed(1)),
}
say(JSON.stringify(verify))

const summary = { date: new Date().toISOString().slice(0, 10), machine: `${cpus().length} cores, ${cpus()[0]?.model}`, node: process.version, append, verify }
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true })
writeFileSync(join(import.meta.dirname, 'results', 'audit.json'), `${JSON.stringify(summary, null, 2)}\n`)
process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`)
await hsm.close()
rmSync(root, { recursive: true, force: true })
