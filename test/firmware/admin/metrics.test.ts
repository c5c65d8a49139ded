import t from 'tap'
import { BoxMetrics } from '../../../firmware/admin/metrics.ts'

t.test('S11: counts from the events, levels read when scraped, in the Prometheus text format', async (t) => {
  const queue = { queued: 3, deferred: 2, total: 5 }
  let bytes = 0
  const clock = { value: 0, now: () => clock.value }
  const m = new BoxMetrics({
    clock,
    levels: {
      queue: () => queue,
      oldestQueued: () => clock.now() - 90_000,
      bytesOut: () => bytes,
      bytesByEgress: () => ({ '192.0.2.10': bytes }),
      capBitsPerSecond: () => 10_000_000,
      hsm: () => ({ up: true, certificates: [{ label: 'smime/bank', daysLeft: 42 }] }),
      dataDisk: () => ({ free: 5e9, total: 2e10 }),
    },
  })
  m.emit({ type: 'submission.accepted', id: 'Q1', account: 'a', clientAddress: '127.0.0.1', tls: 'TLSv1.3', recipients: [], bytes: 10 })
  m.emit({ type: 'submission.refused', account: 'a', clientAddress: '127.0.0.1', code: '550 5.7.1', reply: 'no' })
  for (const outcome of ['delivered', 'delivered', 'deferred', 'bounced'] as const)
    m.emit({ type: 'delivery.attempt', id: 'Q1', kind: 'statement', outcome, recipients: [], mx: 'mx', sourceIp: '192.0.2.10', reply: '', tls: undefined })
  m.emit({ type: 'admin.login', user: 'x', clientAddress: '127.0.0.1', outcome: 'failure', reason: 'bad-password' })
  bytes = 1_250_000
  const text = await m.registry.metrics()
  t.match(text, /sg_submissions_total\{outcome="accepted",code="250"\} 1/)
  t.match(text, /sg_submissions_total\{outcome="refused",code="550"\} 1/)
  t.match(text, /sg_delivery_attempts_total\{outcome="delivered"\} 2/)
  t.match(text, /sg_delivery_attempts_by_source_total\{source="192\.0\.2\.10"\} 4/)
  t.match(text, /sg_queue_mails\{state="queued"\} 3/)
  t.match(text, /sg_queue_mails\{state="deferred"\} 2/)
  t.notMatch(text, /state="total"/)
  t.match(text, /sg_egress_bytes_total 1250000/)
  t.match(text, /sg_egress_bytes_by_source_total\{source="192\.0\.2\.10"\} 1250000/)
  t.match(text, /sg_bandwidth_cap_bits_per_second 10000000/)
  t.match(text, /sg_admin_logins_total\{outcome="failure"\} 1/)
  t.match(text, /sg_hsm_up 1/)
  t.match(text, /sg_queue_oldest_age_seconds 90/)
  t.match(text, /sg_certificate_days_left\{label="smime\/bank"\} 42/)
  t.match(text, /sg_data_disk_bytes\{kind="free"\} 5000000000/)
  m.observeSign(0.004)
  m.observeSign(0.3)
  const after = await m.registry.metrics()
  t.match(after, /sg_hsm_sign_seconds_bucket\{le="0.005"\} 1/)
  t.match(after, /sg_hsm_sign_seconds_count 2/)
})

t.test('the dashboard series: rates per 10 s point for the hour, minute means for the day', async (t) => {
  let bytes = 0
  const clock = { value: 60_000 * 100, now: () => clock.value }
  const m = new BoxMetrics({
    clock,
    levels: {
      queue: () => ({}),
      oldestQueued: () => undefined,
      bytesOut: () => bytes,
      bytesByEgress: () => ({}),
      capBitsPerSecond: () => 8_000,
      hsm: () => undefined,
      dataDisk: () => ({ free: 1, total: 2 }),
    },
  })
  m.sample()
  for (let i = 0; i < 12; i++) {
    clock.value += 10_000
    bytes += 10_000 // 8 kbit/s
    for (let k = 0; k < 20; k++)
      m.emit({
        type: 'delivery.attempt',
        id: 'Q',
        kind: 'statement',
        outcome: 'delivered',
        recipients: [],
        mx: '',
        sourceIp: undefined,
        reply: '',
        tls: undefined,
      })
    m.sample()
  }
  const hour = m.series('hour')
  t.equal(hour.points.length, 12)
  t.equal(hour.capBitsPerSecond, 8_000)
  t.ok(
    hour.points.every((p) => p.bitsOut === 8_000 && p.deliveries === 2),
    '8 kbit/s and 2 deliveries/s at every point',
  )
  const day = m.series('day')
  t.equal(day.points.length, 3, 'two whole minutes and the one under way')
  t.equal(day.points[0]!.bitsOut, 8_000)
  t.equal(day.points[0]!.t % 60_000, 0)
})
