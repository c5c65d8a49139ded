import { appendFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { tinyDisk } from '../../helpers/box.ts'
import { devHsm } from '../../helpers/hsm.ts'
import { deliveryRig, finals, route } from '../../helpers/delivery.ts'
import { startReceiver, until } from '../../helpers/receiver.ts'

/** The delivery engine when the box itself fails or stops: nothing left in flight, no attempt after the grace. */
t.test('an attempt that breaks off inside the box (journal on a full disk) is retried, not left "in flight" forever', async (t) => {
  const { hsm } = await devHsm(t)
  const mnt = tinyDisk(t, '2m')
  const filler = join(mnt, 'filler')
  let fill = true
  const rx = await startReceiver(t, {
    onData: () => {
      // The mail has arrived; before the box can journal that, its disk fills up.
      if (fill) {
        fill = false
        try {
          for (;;) appendFileSync(filler, Buffer.alloc(64 * 1024))
        } catch {
          // ENOSPC: the disk is full now
        }
      }
      return undefined
    },
  })
  const rig = await deliveryRig(t, hsm, route(rx.port), { dataDir: mnt })
  const m = await rig.enqueue('customer@example.net')
  await until(() => rig.records.some((r) => r.msg === 'delivery attempt failed inside the box; retrying in a minute'))
  await until(() => rig.spool.entry(m.id)?.state === 'deferred')
  t.ok(
    rig.records.some((r) => r.msg === 'cannot journal the retry either; it stays queued in memory'),
    'even the deferral could not be written',
  )
  rmSync(filler)
  rig.clock.now += 61_000
  await until(() => rig.spool.entry(m.id) === undefined)
  t.equal(rx.received.length, 2, 'delivered again (at least once: the first end was never recorded)')
  t.same(
    rig.events.filter((e) => e.type === 'delivery.attempt' && e.id === m.id).map((e) => (e as { outcome: string }).outcome),
    ['delivered', 'delivered'],
    'both sends are recorded: the first 250 could not be journalled (#33: journal first), so the mail was sent again',
  )
  t.same(
    rig.events.filter((e) => e.type === 'spool.final' && e.id === m.id).map((e) => (e as { outcome: string }).outcome),
    ['delivered'],
    'and it ended once: no final state is announced before the journal has the outcome',
  )
})

t.test('shutdown does not wait for a receiver that takes minutes: after the grace period the attempt is cut off and the mail stays queued', async (t) => {
  const { hsm } = await devHsm(t)
  const staller = await startReceiver(t, { onData: () => 'stall' })
  const rig = await deliveryRig(
    t,
    hsm,
    { ...route(staller.port), timeouts: { connectMs: 2000, greetingMs: 3000, commandMs: 3000, dataMs: 600_000 } },
    { shutdown: { graceMs: 300 } },
  )
  const m = await rig.enqueue('customer@example.net')
  await until(() => staller.commands.length > 0 && rig.engine.inFlight === 1)
  await new Promise((r) => setTimeout(r, 200)) // the DATA is out; the receiver never answers
  const started = Date.now()
  await rig.engine.stop()
  const took = Date.now() - started
  t.ok(took < 5000, `stopped in ${took} ms (grace 300 ms; DATA timeout 10 min)`)
  t.ok(rig.records.some((r) => r.msg === 'shutdown grace over: closing connections still delivering; their mail is retried after the restart'))
  t.match(rig.spool.entry(m.id), { state: 'deferred' }, 'not final, not lost: retried after the restart')
  t.equal(finals(rig.events)[m.id], undefined)
})

t.test('#15 finding 7: after the grace no new attempt starts — mail waiting behind a stalled receiver stays queued, the stop keeps its grace', async (t) => {
  const { hsm } = await devHsm(t)
  const staller = await startReceiver(t, { onData: () => 'stall' })
  const rig = await deliveryRig(
    t,
    hsm,
    { ...route(staller.port), perDestinationConnections: 4, timeouts: { connectMs: 2000, greetingMs: 3000, commandMs: 3000, dataMs: 600_000 } },
    { shutdown: { graceMs: 1000 } },
  )
  const ids: string[] = []
  for (let i = 0; i < 12; i++) ids.push((await rig.enqueue(`c${i}@example.net`)).id)
  await until(() => staller.commands.filter((c) => c.startsWith('MAIL')).length >= 4)
  await new Promise((r) => setTimeout(r, 200))
  const connectionsBefore = staller.connections.length
  const started = Date.now()
  await rig.engine.stop()
  const took = Date.now() - started
  t.ok(took < 1000 + 3000, `stopped in ${took} ms (grace 1000 ms; the command timeout is 3 s, the DATA timeout 10 min)`)
  t.equal(staller.connections.length, connectionsBefore, 'no connection was opened after the grace')
  t.same(finals(rig.events), {}, 'none final')
  t.ok(
    ids.every((id) => rig.spool.entry(id) !== undefined),
    'all 12 are still in the spool for after the restart',
  )
})
