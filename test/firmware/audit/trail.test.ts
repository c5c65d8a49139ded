import { appendFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { searchTrail } from '../../../firmware/audit/search.ts'
import { recipientHash } from '../../../firmware/audit/redact.ts'
import { AuditTrail } from '../../../firmware/audit/trail.ts'
import { parseConfig } from '../../../firmware/config/load.ts'
import { tinyDisk } from '../../helpers/box.ts'
import { logSink } from '../../helpers/logs.ts'
import { verifyTrail } from '../../../firmware/audit/verify.ts'
import { auditRig, filled, queued, segment, trailText } from '../../helpers/audit.ts'
import { until } from '../../helpers/receiver.ts'

t.test('S2, S6: records are hash-chained JSON lines with sequence numbers and HSM-signed checkpoints, and the trail verifies', async (t) => {
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
