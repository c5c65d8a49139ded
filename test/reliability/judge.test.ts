import t from 'tap'
import { judgeDiskAlarm, judgeHsm, judgeKill, windows, type Delivery } from './judge.ts'

/** #33: the suite's pass/fail code, on synthetic records (the runs themselves are `npm run check:reliability`). */

/** `n` statements accepted and delivered once each, every 250 journalled `ms` after the receiver gave it. */
function clean(n: number, ms = 2) {
  const accepted = new Set<string>()
  const deliveries: Delivery[] = []
  const journal = new Map<string, number[]>()
  for (let i = 0; i < n; i++) {
    accepted.add(`S${i}`)
    deliveries.push({ statement: `S${i}`, queueId: `q${i}`, at: 1000 + i * 10 })
    journal.set(`q${i}`, [1000 + i * 10 + ms])
  }
  return { accepted, deliveries, journal, kills: [] as number[] }
}

t.test('a clean run passes; its window is the journal line after the receiver’s 250', async (t) => {
  const v = judgeKill(clean(2000))
  t.ok(v.ok, v.why.join('; '))
  t.match(v, { accepted: 2000, lost: 0, duplicates: 0, duplicateLimit: 2, withoutA250: 0, window: { p99: 2, count: 2000, interrupted: 0 } })
})

t.test('a duplicate rate over 1 per 1,000 accepted fails; at the limit it passes', async (t) => {
  const r = clean(2000)
  r.deliveries.push({ statement: 'S1', queueId: 'q1', at: 50_000 }, { statement: 'S2', queueId: 'q2', at: 50_010 })
  r.journal.set('q1', [...r.journal.get('q1')!, 50_001])
  r.journal.set('q2', [...r.journal.get('q2')!, 50_011])
  t.ok(judgeKill(r).ok, '2 in 2,000 is the limit')
  r.deliveries.push({ statement: 'S3', queueId: 'q3', at: 50_020 })
  r.journal.set('q3', [...r.journal.get('q3')!, 50_021])
  const v = judgeKill(r)
  t.notOk(v.ok)
  t.match(v.why.join(), /3 delivered twice, over 2/)
  // A small run has no room at all: one duplicate in 300 fails.
  const small = clean(300)
  small.deliveries.push({ statement: 'S0', queueId: 'q0', at: 9000 })
  small.journal.set('q0', [1002, 9001])
  t.notOk(judgeKill(small).ok, 'one duplicate in 300 accepted fails')
})

t.test('an interrupted delivery’s window counts until the kill', async (t) => {
  const r = clean(50)
  // The receiver gave its 250 at 5000; the kill came at 5300 and the journal never had the line.
  r.deliveries.push({ statement: 'X', queueId: 'qx', at: 5000 })
  r.accepted.add('X')
  r.kills.push(5300)
  const w = windows(r)
  t.equal(w.interrupted, 1)
  t.equal(w.max, 300, 'the 250 → kill time is its window')
  const v = judgeKill(r)
  t.notOk(v.ok, 'one in 51 puts p99 over 20 ms')
  t.match(v.why.join(), /window p99 300\.0 ms/)
  // A line written after the kill belongs to the next run (the replay), not to this delivery.
  r.journal.set('qx', [5400])
  t.equal(windows(r).interrupted, 1)
})

t.test('the window runs to the end of the line’s write: a stamp is taken before the write is durable', async (t) => {
  const r = clean(500, 12)
  const writes = new Map([...r.journal.values()].map(([s]) => [s!, 0.5]))
  t.match(judgeKill({ ...r, writes }), { ok: true, window: { p99: 12.5 } }, '12 ms to the stamp + 0.5 ms to durable')
  for (const s of [...writes.keys()].slice(0, 10)) writes.set(s, 9)
  const v = judgeKill({ ...r, writes })
  t.notOk(v.ok, '2 % of the writes at 9 ms: p99 21 ms')
  t.match(v, { window: { p99: 21 }, writes: { max: 9, unknown: 0 } })
  t.match(v.why.join(), /window p99 21\.0 ms over 20 ms/)
  // A line whose write is not known is given the longest write seen.
  writes.delete([...writes.keys()][0]!)
  t.match(judgeKill({ ...r, writes }), { writes: { unknown: 1 } })
  // A line written but not yet durable when the kill came: the delivery was interrupted.
  const k = clean(50, 1)
  const at = k.deliveries[0]!.at
  k.kills.push(at + 3)
  const w = windows({ ...k, writes: new Map([[at + 1, 5]]) })
  t.equal(w.interrupted, 1, 'its line (stamp +1, durable +6) came after the kill (+3)')
  t.equal(w.values[0], 3, 'its window is the kill')
  const written = windows({ ...k, writes: new Map([[at + 1, 5]]) }, 'written')
  t.equal(written.interrupted, 0, 'but its line was in the file (+1) before the kill: a kill -9 does not send it again')
  t.equal(written.values[0], 1)
})

t.test('the window to the line’s write is judged too: lines written late fail even when every flush is instant', async (t) => {
  const r = clean(500, 25)
  const v = judgeKill({ ...r, writes: new Map([...r.journal.values()].map(([s]) => [s!, 0])) })
  t.notOk(v.ok)
  t.match(v, { window: { p99: 25 }, written: { p99: 25, interrupted: 0 } })
  t.match(v.why.join(), /window to the line's write p99 25\.0 ms over 20 ms/)
})

t.test('lost mail and mail delivered without a 250 are told apart', async (t) => {
  const r = clean(100)
  r.accepted.add('never')
  r.deliveries.push({ statement: 'no-250', queueId: 'qn', at: 99_000 })
  r.journal.set('qn', [99_001])
  const v = judgeKill(r)
  t.equal(v.lost, 1)
  t.equal(v.withoutA250, 1)
  t.notOk(v.ok)
  t.match(v.why.join(), /1 accepted mail\(s\) never delivered/)
})

t.test('the disk row fails unless the alarm comes before the first 452', async (t) => {
  t.match(judgeDiskAlarm(1000, 5150), { ok: true, text: 'alarm 4.15 s before the first 452' })
  t.match(judgeDiskAlarm(6000, 5000), { ok: false, text: 'alarm 1.00 s AFTER the first 452' })
  t.match(judgeDiskAlarm(undefined, 5000), { ok: false })
  t.match(judgeDiskAlarm(1000, undefined), { ok: false, text: /never filled/ })
})

t.test('the HSM row: log and status within 1 s of the token going and 2 s of its return; never connected beside a failed probe', async (t) => {
  const good = { goneAt: 0, backAt: 20_000, logUnavailableAt: 18, statusUnavailableAt: 300, logReadyAt: 21_540, statusReadyAt: 21_600, connectedWithError: 0 }
  t.ok(judgeHsm(good).ok, judgeHsm(good).text)
  t.notOk(judgeHsm({ ...good, statusUnavailableAt: 2360 }).ok, 'status unavailable only at +2.36 s fails')
  t.notOk(judgeHsm({ ...good, logReadyAt: 22_100 }).ok, 'ready in the log 2.1 s after the return fails')
  t.notOk(judgeHsm({ ...good, statusReadyAt: undefined }).ok, 'never ready fails')
  t.notOk(judgeHsm({ ...good, connectedWithError: 1 }).ok, 'connected beside a failed probe fails')
  t.notOk(judgeHsm({ ...good, logUnavailableAt: -5 }).ok, 'a change logged before the token went is not this one')
})

t.test('a kill a few ms before the receiver’s stamped 250 is that delivery’s kill, not the journal line after the restart', async (t) => {
  const k = clean(50, 1)
  const at = k.deliveries[0]!.at
  k.kills.push(at - 4)
  k.journal.set(k.deliveries[0]!.queueId!, [at + 2000])
  const w = windows(k)
  t.equal(w.interrupted, 1, 'interrupted by the kill 4 ms before its stamp')
  t.equal(w.max, 1, 'the line after the restart (+2,000 ms) is not its window')
})
