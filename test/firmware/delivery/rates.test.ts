import t from 'tap'
import { devHsm } from '../../helpers/hsm.ts'
import { deliveryRig, route } from '../../helpers/delivery.ts'
import { startReceiver, until } from '../../helpers/receiver.ts'

/** The delivery engine's rate and byte budgets (M3), measured against loopback receivers. */
t.test('per-destination message rate: 20 messages at 5/s take about 3 s after a one-second burst', async (t) => {
  const { hsm } = await devHsm(t)
  const rx = await startReceiver(t)
  const rig = await deliveryRig(t, hsm, { ...route(rx.port), perDestinationMessagesPerSecond: 5 })
  const started = Date.now()
  for (let i = 0; i < 20; i++) await rig.enqueue(`c${i}@example.net`)
  await until(() => rx.received.length === 20, 20_000)
  const span = rx.received[19]!.at - started
  // A burst of 6 (one second at 5/s, plus the first), then 14 more at 200 ms each.
  t.ok(span >= 2700, `the last arrived ${span} ms after the first was queued (≥ 2.7 s)`)
})

t.test('the byte budget: 2 MB at 4 Mbit/s through four connections takes about 4 s', async (t) => {
  const { hsm } = await devHsm(t)
  const rx = await startReceiver(t)
  const rig = await deliveryRig(t, hsm, { ...route(rx.port), bandwidthBitsPerSecond: 4_000_000 })
  const body = `${'x'.repeat(998)}\r\n`.repeat(100) // 100 KB per message
  const started = Date.now()
  for (let i = 0; i < 20; i++) await rig.enqueue(`c${i}@example.net`, body)
  await until(() => rx.received.length === 20, 30_000)
  const seconds = (Date.now() - started) / 1000
  t.ok(seconds >= 3.8, `took ${seconds.toFixed(1)} s (≥ 3.8 s at 0.5 MB/s, 1 % burst)`)
  t.ok(rig.engine.limiter.passed >= 2_000_000, 'every byte passed the limiter')
})

t.test('M3: an egress address with its own sub-limit stays within it while the others use the rest of the budget', async (t) => {
  const { hsm } = await devHsm(t)
  const rx = await startReceiver(t)
  const rig = await deliveryRig(t, hsm, {
    ...route(rx.port),
    bandwidthBitsPerSecond: 80_000_000,
    messagesPerConnection: 1, // a new connection, and so the next address in turn, for each message
    egress: [
      { address: '127.0.0.11', ehloName: 'slow.localhost', bitsPerSecond: 1_600_000 }, // 200 KB/s
      { address: '127.0.0.12', ehloName: 'fast.localhost' },
    ],
  })
  const body = `${'x'.repeat(998)}\r\n`.repeat(50) // 50 KB per message
  const started = Date.now()
  for (let i = 0; i < 20; i++) await rig.enqueue(`c${i}@example.net`, body)
  await until(() => rx.received.length === 20, 30_000)
  const from = (ip: string) => rx.received.filter((r) => r.remoteAddress === ip)
  const slow = from('127.0.0.11')
  const fast = from('127.0.0.12')
  t.ok(slow.length >= 5 && fast.length >= 5, `both addresses carried mail (${slow.length} / ${fast.length})`)
  const slowBytes = slow.reduce((n, r) => n + r.data.length, 0)
  const slowSeconds = (Math.max(...slow.map((r) => r.at)) - started) / 1000
  // Its bytes (plus SMTP and TLS overhead) passed 200 KB/s with a 1 % burst: they cannot have arrived sooner.
  t.ok(
    slowSeconds >= (slowBytes / 200_000) * 0.97,
    `${(slowBytes / 1000).toFixed(0)} KB from the limited address took ${slowSeconds.toFixed(2)} s (≥ ${((slowBytes / 200_000) * 0.97).toFixed(2)} s)`,
  )
  const fastSeconds = (Math.max(...fast.map((r) => r.at)) - started) / 1000
  t.ok(fastSeconds < slowSeconds, `the unlimited address finished first (${fastSeconds.toFixed(2)} s)`)
})
