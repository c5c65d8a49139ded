import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { verifyTrail } from '../../../firmware/audit/verify.ts'
import { filled, queued, segment } from '../../helpers/audit.ts'

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
