import t from 'tap'
import { ByteRateLimiter } from '../../../hal/net/throttle.ts'

t.test('GCRA byte budget: grants follow the rate exactly on a fake clock, at most the burst ahead', async (t) => {
  let now = 0
  const l = new ByteRateLimiter({ bytesPerSecond: 1000, burstBytes: 100, clock: { now: () => now } })
  const at: number[] = []
  for (let i = 0; i < 5; i++) void l.take(500).then(() => at.push(now))
  // Step the fake clock; each take(0) makes the limiter look at the clock as its timer would.
  for (; at.length < 5; now += 10) {
    void l.take(0)
    await new Promise((r) => setImmediate(r))
  }
  t.same(at, [0, 400, 900, 1400, 1900], '500 bytes every 500 ms, each 100 ms (the burst) early')
  t.equal(l.passed, 2500)
  now += 10_000 // let the nudges still queued through, so no timer waits on the frozen clock
  await l.take(0)
})

t.test('a chunk larger than the burst is not starved (real timers)', async (t) => {
  const l = new ByteRateLimiter({ bytesPerSecond: 500_000, burstBytes: 0, clock: { now: () => Date.now() } })
  const started = Date.now()
  await Promise.all(
    [0, 1, 2, 3].map(async () => {
      for (let i = 0; i < 15; i++) await l.take(8192)
    }),
  )
  const ms = Date.now() - started
  t.equal(l.passed, 4 * 15 * 8192)
  t.ok(ms >= 900 && ms < 2000, `${ms} ms for ~1 s of budget`)
})

t.test('a new rate applies to the grants after it', async (t) => {
  let now = 0
  const l = new ByteRateLimiter({ bytesPerSecond: 1000, burstBytes: 100, clock: { now: () => now } })
  const at: number[] = []
  const step = async (until: number) => {
    for (; at.length < until; now += 10) {
      void l.take(0)
      await new Promise((r) => setImmediate(r))
    }
  }
  void l.take(500).then(() => at.push(now))
  void l.take(500).then(() => at.push(now))
  await step(2)
  l.setRate(2000, 100)
  void l.take(500).then(() => at.push(now))
  void l.take(500).then(() => at.push(now))
  await step(4)
  t.same(at, [0, 400, 950, 1200], 'after the change, 500 bytes every 250 ms, each the new burst (50 ms) early')
  t.equal(l.bytesPerSecond, 2000)
  now += 10_000
  await l.take(0)
})
