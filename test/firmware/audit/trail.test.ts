import t from 'tap'
import type { Test } from 'tap'
import { appendFileSync, existsSync, readFileSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { searchTrail } from '../../../firmware/audit/search.ts'
import { recipientHash } from '../../../firmware/audit/redact.ts'
import { AuditTrail } from '../../../firmware/audit/trail.ts'
import { parseConfig } from '../../../firmware/config/load.ts'
import { tinyDisk } from '../../helpers/box.ts'
import { logSink } from '../../helpers/logs.ts'
import { verifyTrail } from '../../../firmware/audit/verify.ts'
import type { BoxEvent } from '../../../firmware/events.ts'
import { auditRig, trailText } from '../../helpers/audit.ts'
import { until } from '../../helpers/receiver.ts'

const queued = (i: number): BoxEvent => ({ type: 'spool.queued', id: `Q${i}`, epoch: 'e1', bytes: 1000 + i })
const segment = (dir: string) =>
  join(
    dir,
    readdirSync(dir).find((n) => /^trail-.*\.jsonl$/.test(n))!,
  )

async function filled(t: Test, n: number, audit: Record<string, unknown> = {}) {
  const rig = await auditRig(t, { checkpointEvery: 10, ...audit })
  for (let i = 1; i <= n; i++) {
    rig.trail.emit(queued(i))
    // Written in groups, as a running box does; each group of 10 gets its checkpoint.
    if (i % 10 === 0) await rig.trail.flush().then(() => rig.trail.checkpoint())
  }
  await rig.trail.flush()
  await rig.trail.checkpoint()
  return rig
}

t.test('S6: records are hash-chained JSON lines with HSM-signed checkpoints, and the trail verifies', async (t) => {
  const rig = await filled(t, 45)
  const records = rig.records()
  t.equal(records.length, 46, 'audit.started + 45 events')
  t.match(records[0], { seq: 1, prev: '0'.repeat(64), type: 'audit.started', lastSeq: 0 })
  t.match(records[10], { seq: 11, type: 'spool.queued', id: 'Q10', bytes: 1010, time: '2026-11-22T08:00:00.000Z' })
  const r = await verifyTrail(rig.trail.dir, rig.publicKey)
  t.ok(r.ok, 'intact trail verifies')
  t.equal(r.records, 46)
  t.equal(r.lastSeq, 46)
  t.equal(r.coveredTo, 46, 'the last record is covered by a signed checkpoint')
  t.ok(r.checkpoints >= 4, `checkpoints every 10 records (${r.checkpoints})`)
  t.equal(rig.trail.head.seq, 46)
})

t.test('S6: recipients are stored as HMAC (HSM key) and masked form, never in clear; search finds them by HMAC', async (t) => {
  const rig = await auditRig(t)
  const address = 'Chen.Customer@example.com'
  rig.trail.emit({
    type: 'submission.accepted',
    id: 'Q1',
    account: 'statements',
    clientAddress: '127.0.0.1',
    tls: 'TLSv1.3',
    recipients: [address],
    bytes: 5000,
  })
  rig.trail.emit({
    type: 'delivery.attempt',
    id: 'Q1',
    kind: 'statement',
    outcome: 'delivered',
    recipients: [address],
    mx: 'mx.example.com',
    sourceIp: '127.0.0.11',
    reply: '250 ok',
    tls: 'TLSv1.3',
  })
  rig.trail.emit({
    type: 'submission.accepted',
    id: 'Q2',
    account: 'statements',
    clientAddress: '127.0.0.1',
    tls: 'TLSv1.3',
    recipients: ['someone.else@example.com'],
    bytes: 5000,
  })
  await rig.trail.flush()
  const text = trailText(rig.trail.dir)
  t.notOk(text.toLowerCase().includes('chen.customer'), 'no clear address in the trail')
  const h = await recipientHash(rig.hsm, address)
  t.match(rig.records()[1], { type: 'submission.accepted', recipients: [{ h, m: 'c****r@example.com' }] })
  t.equal(h, await recipientHash(rig.hsm, ' chen.customer@EXAMPLE.com '), 'the HMAC is of the normalised address')
  const found = []
  for await (const r of searchTrail(rig.trail.dir, { recipientHash: h })) found.push(r)
  t.same(
    found.map((r) => [r.type, r.id]),
    [
      ['submission.accepted', 'Q1'],
      ['delivery.attempt', 'Q1'],
    ],
    'search by recipient HMAC',
  )
  const byId = []
  for await (const r of searchTrail(rig.trail.dir, { id: 'Q2', type: 'submission.accepted' })) byId.push(r.seq)
  t.same(byId, [4])
})

t.test('S6: a recipient named in an MX reply or a deferral reason is masked too', async (t) => {
  const rig = await auditRig(t)
  rig.trail.emit({
    type: 'delivery.attempt',
    id: 'Q1',
    kind: 'statement',
    outcome: 'bounced',
    recipients: ['wang.customer@example.com'],
    mx: 'mx',
    sourceIp: '127.0.0.11',
    reply: '550 5.1.1 <wang.customer@example.com>: Recipient address rejected',
    tls: undefined,
  })
  rig.trail.emit({ type: 'spool.final', id: 'Q1', outcome: 'bounced', reason: '550 5.1.1 wang.customer@example.com: unknown user' })
  await rig.trail.flush()
  t.notOk(trailText(rig.trail.dir).includes('wang.customer'))
  t.match(rig.records()[1], { reply: '550 5.1.1 <w****r@example.com>: Recipient address rejected' })
  t.match(rig.records()[2], { reason: '550 5.1.1 w****r@example.com: unknown user' })
})

t.test('S7: configuration snapshots in the trail lose their secrets', async (t) => {
  const rig = await auditRig(t)
  rig.trail.emit({
    type: 'config.changed',
    who: 'admin',
    reason: 'new account',
    before: { accounts: [] },
    after: { accounts: [{ name: 'a', passwordHash: 'scrypt$secret' }] },
  })
  await rig.trail.flush()
  t.notOk(trailText(rig.trail.dir).includes('scrypt$secret'))
  t.match(rig.records()[1], { type: 'config.changed', who: 'admin', after: { accounts: [{ name: 'a', passwordHash: '[redacted]' }] } })
})

/** Rewrites the live segment's lines with `edit` and returns the verification result. */
async function tampered(t: Test, edit: (lines: string[]) => string[]) {
  const rig = await filled(t, 45)
  await rig.trail.stop()
  const file = segment(rig.trail.dir)
  const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean)
  writeFileSync(
    file,
    edit(lines)
      .map((l) => `${l}\n`)
      .join(''),
  )
  return verifyTrail(rig.trail.dir, rig.publicKey)
}

t.test('S6: editing one record is detected and the record is named', async (t) => {
  const r = await tampered(t, (l) => ((l[19] = l[19]!.replace('"bytes":1019', '"bytes":9999')), l))
  t.notOk(r.ok)
  t.equal(r.problem?.seq, 20)
  t.match(r.problem?.reason, /record 20 .*changed/)
  t.equal(r.problem?.line, 20)
})

t.test("S6: editing a record between checkpoints is detected by the next record's link", async (t) => {
  const r = await tampered(t, (l) => ((l[24] = l[24]!.replace('"id":"Q24"', '"id":"Q99"')), l))
  t.notOk(r.ok)
  t.equal(r.problem?.seq, 25)
  t.match(r.problem?.reason, /record 25 does not hash to the link stored in record 26/)
})

t.test('S6: deleting a record is detected', async (t) => {
  const r = await tampered(t, (l) => (l.splice(29, 1), l))
  t.notOk(r.ok)
  t.equal(r.problem?.seq, 30)
  t.match(r.problem?.reason, /record 30 missing/)
})

t.test('S6: reordering two records is detected', async (t) => {
  const r = await tampered(t, (l) => (([l[14], l[15]] = [l[15]!, l[14]!]), l))
  t.notOk(r.ok)
  t.equal(r.problem?.seq, 15)
})

t.test('S6: inserting a record is detected', async (t) => {
  const r = await tampered(t, (l) => (l.splice(5, 0, l[5]!.replace('"bytes":1005', '"bytes":1')), l))
  t.notOk(r.ok)
  t.equal(r.problem?.seq, 6)
  t.match(r.problem?.reason, /seq 6 where 7 was expected/)
})

t.test('S6: a trail rewritten and re-chained from one record on fails at the next signed checkpoint', async (t) => {
  const { recordHash, recordLine } = await import('../../../firmware/audit/record.ts')
  const r = await tampered(t, (lines) => {
    let prev = recordHash(lines[21]!)
    return lines.map((l, i) => {
      if (i < 22) return l
      const { seq, prev: _p, ...fields } = JSON.parse(l) as Record<string, unknown>
      if (i === 22) fields.bytes = 1
      const line = recordLine(seq as number, prev, fields)
      prev = recordHash(line)
      return line
    })
  })
  t.notOk(r.ok)
  t.match(r.problem?.reason, /differ from what the checkpoint signed/)
  t.equal(r.problem?.seq, 22, 'names the first record after the last checkpoint that still matched (seq 21)')
})

t.test('S6: truncating the tail is detected by the last signed checkpoint', async (t) => {
  const r = await tampered(t, (l) => l.slice(0, 38))
  t.notOk(r.ok)
  t.match(r.problem?.reason, /ends at seq 38 but a checkpoint .* covers seq 40/)
  t.equal(r.problem?.seq, 39)
})

t.test('S6: a checkpoint not signed by the box key fails verification', async (t) => {
  const rig = await filled(t, 15)
  await rig.trail.stop()
  const file = join(
    rig.trail.dir,
    readdirSync(rig.trail.dir).find((n) => n.startsWith('checkpoints-'))!,
  )
  const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean)
  const c = JSON.parse(lines[0]!) as { seq: number; head: string; time: string; sig: string }
  lines[0] = JSON.stringify({ ...c, time: '2020-01-01T00:00:00.000Z' })
  writeFileSync(file, lines.map((l) => `${l}\n`).join(''))
  const r = await verifyTrail(rig.trail.dir, rig.publicKey)
  t.notOk(r.ok)
  t.match(r.problem?.reason, /invalid signature/)
})

t.test('S6: a checkpoint made after midnight, on a day with no records of its own, still guards the tail', async (t) => {
  const rig = await filled(t, 5)
  rig.trail.emit(queued(6))
  await rig.trail.flush()
  rig.clock.value = Date.parse('2026-11-23T00:00:05Z') // the box stops just after midnight
  await rig.trail.checkpoint()
  await rig.trail.stop()
  t.ok(readdirSync(rig.trail.dir).includes('checkpoints-2026-11-23.jsonl'))
  t.notOk(
    readdirSync(rig.trail.dir).some((n) => n.startsWith('trail-2026-11-23')),
    'no records that day',
  )
  const file = segment(rig.trail.dir)
  writeFileSync(file, readFileSync(file, 'utf8').split('\n').slice(0, -2).join('\n') + '\n') // the last record removed
  const r = await verifyTrail(rig.trail.dir, rig.publicKey)
  t.notOk(r.ok)
  t.match(r.problem?.reason, /ends at seq 6 but a checkpoint signed at 2026-11-23T00:00:05.000Z covers seq 7/)
})

t.test('a restart continues the chain; a torn last line from a crash is cut off and reported', async (t) => {
  const rig = await filled(t, 5)
  await rig.trail.stop()
  appendFileSync(segment(rig.trail.dir), '{"seq":7,"prev":"abc')
  const again = await rig.restart()
  again.emit(queued(6))
  await again.flush()
  const records = rig.records()
  t.match(records.at(-2), { seq: 7, type: 'audit.started', lastSeq: 6, tornBytes: 20 })
  t.match(records.at(-1), { seq: 8, id: 'Q6' })
  rig.trail = again
  await again.checkpoint()
  t.ok((await verifyTrail(again.dir, rig.publicKey)).ok)
})

t.test('S6: one segment per UTC day, compressed when the day is over; verification spans days and starts at any day', async (t) => {
  const rig = await filled(t, 5)
  rig.clock.value += 86_400_000
  for (let i = 6; i <= 10; i++) rig.trail.emit(queued(i))
  await rig.trail.flush()
  rig.clock.value += 86_400_000
  rig.trail.emit(queued(11))
  await rig.trail.stop()
  const names = readdirSync(rig.trail.dir).sort()
  t.ok(names.includes('trail-2026-11-22.jsonl.gz') && names.includes('trail-2026-11-23.jsonl.gz') && names.includes('trail-2026-11-24.jsonl'), names.join(' '))
  t.notOk(names.includes('trail-2026-11-22.jsonl'), 'plain file removed after compression')
  t.same((JSON.parse(readFileSync(join(rig.trail.dir, 'trail-2026-11-22.end'), 'utf8')) as { seq: number }).seq, 6)
  t.ok((await verifyTrail(rig.trail.dir, rig.publicKey)).ok)
  const fromDay2 = await verifyTrail(rig.trail.dir, rig.publicKey, { from: '2026-11-23' })
  t.ok(fromDay2.ok)
  t.equal(fromDay2.firstSeq, 7, "anchored on the previous day's end file")
  const found = []
  for await (const r of searchTrail(rig.trail.dir, { type: 'spool.queued', from: Date.parse('2026-11-23T00:00:00Z'), to: Date.parse('2026-11-23T23:59:59Z') }))
    found.push(r.id)
  t.same(found, ['Q6', 'Q7', 'Q8', 'Q9', 'Q10'])
})

t.test('a finished day gets a search filter; a search for mail not in that day does not read it', async (t) => {
  const rig = await filled(t, 5) // Q1..Q5 on 2026-11-22
  rig.clock.value += 86_400_000
  for (let i = 6; i <= 8; i++) rig.trail.emit(queued(i))
  await rig.trail.stop()
  const dir = rig.trail.dir
  t.ok(existsSync(join(dir, 'trail-2026-11-22.bloom')), 'built when the day was finished')
  t.notOk(existsSync(join(dir, 'trail-2026-11-23.bloom')), 'the current day has none')

  // Damage the finished day: a search that reads it fails, one that the filter lets skip it does not.
  writeFileSync(join(dir, 'trail-2026-11-22.jsonl.gz'), 'damaged')
  const found = []
  for await (const r of searchTrail(dir, { id: 'Q7' })) found.push(r.id)
  t.same(found, ['Q7'], 'the finished day was not read')
  await t.rejects(async () => {
    for await (const r of searchTrail(dir, { id: 'Q3' })) void r
  }, 'a day the filter cannot rule out is read')
})

t.test('a restart builds the filters finished days lack (a trail from before filters)', async (t) => {
  const rig = await filled(t, 3)
  rig.clock.value += 86_400_000
  rig.trail.emit(queued(4))
  await rig.trail.stop()
  rmSync(join(rig.trail.dir, 'trail-2026-11-22.bloom'))
  await rig.restart()
  await until(() => existsSync(join(rig.trail.dir, 'trail-2026-11-22.bloom')), 10_000) // built in the background
  const found = []
  for await (const r of searchTrail(rig.trail.dir, { id: 'Q2' })) found.push(r.id)
  t.same(found, ['Q2'])
})

t.test('S6: segments older than the retention period are removed at rotation, and the removal is recorded', async (t) => {
  const rig = await filled(t, 3, { retentionDays: 2 })
  rig.clock.value += 3 * 86_400_000
  rig.trail.emit(queued(4))
  await rig.trail.flush()
  await rig.trail.stop()
  t.notOk(existsSync(join(rig.trail.dir, 'trail-2026-11-22.jsonl.gz')), 'old day removed')
  t.ok(rig.records().some((r) => r.type === 'audit.retention'))
})

t.test('S6: over the disk budget the box raises an alarm and keeps recording', async (t) => {
  const rig = await filled(t, 3, { diskBudgetBytes: 1024 * 1024 })
  writeFileSync(join(rig.trail.dir, 'unrelated.bin'), Buffer.alloc(2 * 1024 * 1024))
  rig.clock.value += 86_400_000
  rig.trail.emit(queued(4))
  await rig.trail.stop()
  t.ok(rig.records().some((r) => r.type === 'audit.disk_budget'))
})

t.test('S6: the operational log gets recipients masked', async (t) => {
  const { LogEventSink } = await import('../../../firmware/events.ts')
  const { logSink } = await import('../../helpers/logs.ts')
  const { log, text } = logSink()
  new LogEventSink(log).emit({
    type: 'delivery.attempt',
    id: 'Q1',
    kind: 'statement',
    outcome: 'delivered',
    recipients: ['customer@example.net'],
    mx: 'mx',
    sourceIp: '127.0.0.11',
    reply: '250 ok',
    tls: undefined,
  })
  t.match(text(), /c\*\*\*\*r@example\.net/)
  t.notMatch(text(), /customer@example\.net/)
})

t.test('#15 finding 8: a disk that fills mid-group neither loses nor glues a record; submission is held back until the trail has caught up', async (t) => {
  const { base, mnt, trail } = await trailOnTinyDisk(t, '512k', { audit: { flushMs: 5, checkpointEvery: 50, maxBacklog: 100_000 } })
  t.teardown(() => trail.stop())
  // Fill what is left of the disk but a few kilobytes, so that the trail runs out mid-group.
  const filler = join(mnt, 'filler')
  try {
    for (;;) appendFileSync(filler, Buffer.alloc(4096))
  } catch {
    // full
  }
  rmSync(filler)
  writeFileSync(filler, Buffer.alloc(Math.max(0, statfsFree(mnt) - 40 * 1024)))
  const emitted = 600
  let sawFull = false
  for (let i = 1; i <= emitted; i++) {
    trail.emit({ type: 'spool.queued', id: `Q${i}`, epoch: 'e'.repeat(100), bytes: i })
    if (i % 50 === 0) {
      await trail.flush()
      if (!trail.accepting) sawFull = true
    }
  }
  t.ok(sawFull, 'the trail said it could not take more while the disk was full')
  t.ok(trail.backlog > 0 && trail.backlog < emitted, `${trail.backlog} records waiting in memory, the rest written before the disk filled`)
  rmSync(filler)
  await until(() => trail.backlog === 0 && trail.accepting, 10_000)
  await trail.flush()
  await trail.checkpoint()
  const text = trailText(trail.dir)
  const lines = text.split('\n').filter(Boolean)
  t.ok(
    lines.every((l) => l.startsWith('{"seq":') && l.endsWith('}')),
    'no torn or glued line',
  )
  const queuedIds = lines
    .map((l) => JSON.parse(l) as { type: string; id?: string })
    .filter((r) => r.type === 'spool.queued')
    .map((r) => r.id)
  t.same(
    queuedIds,
    Array.from({ length: emitted }, (_, i) => `Q${i + 1}`),
    'every record is there, once, in order',
  )
  const v = await verifyTrail(trail.dir, base.publicKey)
  t.ok(v.ok, `the trail verifies (${v.records} records)`)
})

/** A trail whose data directory is on a tmpfs of `size` (the HSM token stays elsewhere). */
async function trailOnTinyDisk(t: Test, size: string, extra: Record<string, unknown>) {
  const base = await auditRig(t)
  const mnt = tinyDisk(t, size)
  const { log, records } = logSink()
  const trail = new AuditTrail({ config: parseConfig({ dataDir: join(mnt, 'data'), ...extra }), log, hsm: base.hsm, clock: { now: () => Date.now() } })
  await trail.start()
  return { base, mnt, trail, records }
}

function statfsFree(dir: string): number {
  const s = statfsSync(dir)
  return s.bavail * s.bsize
}

t.test('stopping with the disk still full: tries for the shutdown grace, then says what is lost — no busy loop', async (t) => {
  const { mnt, trail, records } = await trailOnTinyDisk(t, '256k', { audit: { flushMs: 5 }, shutdown: { graceMs: 1000 } })
  try {
    for (;;) appendFileSync(join(mnt, 'filler'), Buffer.alloc(4096))
  } catch {
    // full
  }
  for (let i = 0; i < 50; i++) trail.emit(queued(i))
  await trail.flush()
  const cpu = process.cpuUsage()
  const started = Date.now()
  await trail.stop()
  const took = Date.now() - started
  const used = process.cpuUsage(cpu)
  t.ok(took >= 900 && took < 3000, `stopped after ${took} ms (grace 1000 ms)`)
  t.ok((used.user + used.system) / 1000 < took / 2, `without spinning (${Math.round((used.user + used.system) / 1000)} ms of CPU)`)
  t.match(
    records.find((r) => r.msg?.toString().startsWith('stopping with audit records that could not be written')),
    { level: 60, unwritten: Number },
  )
})
