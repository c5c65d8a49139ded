import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { searchTrail } from '../../../firmware/audit/search.ts'
import { verifyTrail } from '../../../firmware/audit/verify.ts'
import { auditRig, filled, queued } from '../../helpers/audit.ts'
import { until } from '../../helpers/receiver.ts'

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

t.test('the day being written never gets a search filter, even when a trail starts empty and fills at once', async (t) => {
  const rig = await auditRig(t)
  for (let i = 1; i <= 2000; i++) rig.trail.emit(queued(i))
  await rig.trail.flush()
  await rig.trail.stop()
  t.notOk(
    readdirSync(rig.trail.dir).some((n) => n.endsWith('.bloom')),
    'no filter of part of a day',
  )
  let hits = 0
  for await (const r of searchTrail(rig.trail.dir, { id: 'Q1540' })) if (r.id === 'Q1540') hits++
  t.equal(hits, 1, 'a search finds a record of the day being written')
})
