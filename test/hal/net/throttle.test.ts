import { randomBytes } from 'node:crypto'
import { connect, createServer, type AddressInfo } from 'node:net'
import t from 'tap'
import { ByteRateLimiter, ThrottledSocket } from '../../../hal/net/throttle.ts'

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

/** Grants of `n` bytes asked for by `writers` back to back on a fake clock stepped 1 ms at a time until `until`; the time of each. */
async function grantsOnFakeClock(l: ByteRateLimiter, clock: { now: number }, o: { n: number; writers: number; until: number; pause?: [number, number] }) {
  const at: number[] = []
  let stop = false
  const writer = async () => {
    while (!stop) {
      const p = o.pause
      while (p && clock.now >= p[0] && clock.now < p[1]) await new Promise((r) => setImmediate(r))
      if (stop) return
      await l.take(o.n)
      at.push(clock.now)
    }
  }
  const writers = Array.from({ length: o.writers }, writer)
  for (; clock.now < o.until; clock.now += 1) {
    void l.take(0) // the limiter looks at the clock as its timer would
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
  }
  stop = true
  clock.now += 10_000
  await Promise.all(writers)
  return at.filter((t) => t < o.until)
}

/**
 * The most bytes granted in any real second (grants of `n` bytes at the whole milliseconds given):
 * a grant stamped t happened in [t, t + 1), so one real second can hold grants stamped t and t + 1000.
 */
function busiest(at: number[], n: number, ms = 1000): number {
  let most = 0
  for (let i = 0, j = 0; i < at.length; i++) {
    while (at[i]! - at[j]! > ms) j++
    most = Math.max(most, (i - j + 1) * n)
  }
  return most
}

t.test('M3 #35: a byte budget with everySecond: no 1-second window above the budget, though the burst is large', async (t) => {
  const clock = { now: 0 }
  const l = new ByteRateLimiter({ bytesPerSecond: 10_000, burstBytes: 2_000, clock: { now: () => clock.now }, everySecond: true })
  const at = await grantsOnFakeClock(l, clock, { n: 100, writers: 3, until: 3000 })
  t.equal(busiest(at, 100), 10_000, 'the busiest second holds exactly a second of budget')
  t.equal(at.filter((x) => x < 1000).length * 100, 10_000, 'the first second too, though the idle budget starts with 2,000 bytes of burst')
  // Without the window the same burst lets the first second hold the burst on top.
  const clock2 = { now: 0 }
  const plain = new ByteRateLimiter({ bytesPerSecond: 10_000, burstBytes: 2_000, clock: { now: () => clock2.now } })
  const at2 = await grantsOnFakeClock(plain, clock2, { n: 100, writers: 3, until: 3000 })
  t.ok(busiest(at2, 100) >= 11_900, `GCRA alone: ${busiest(at2, 100)} bytes in its busiest second (the test can tell the difference)`)
})

t.test('M3 #35: a pause with nothing to send is made up afterwards, up to the burst, within the second', async (t) => {
  const clock = { now: 0 }
  const l = new ByteRateLimiter({ bytesPerSecond: 10_000, burstBytes: 2_000, clock: { now: () => clock.now }, everySecond: true })
  // Writers idle from 1,500 to 1,650 ms: 1,500 bytes of budget unused.
  const at = await grantsOnFakeClock(l, clock, { n: 100, writers: 2, until: 4000, pause: [1500, 1650] })
  t.equal(busiest(at, 100), 10_000, 'no second above the budget')
  t.equal(at.length * 100, 40_000, 'four seconds, four seconds of budget: the 1,500 bytes the pause left unused were made up')
  // A pause much longer than the burst loses part of what it left unused: 6,000 bytes, at most 2,000 made up.
  const clock2 = { now: 0 }
  const l2 = new ByteRateLimiter({ bytesPerSecond: 10_000, burstBytes: 2_000, clock: { now: () => clock2.now }, everySecond: true })
  const at2 = await grantsOnFakeClock(l2, clock2, { n: 100, writers: 2, until: 4000, pause: [1500, 2100] })
  t.ok(at2.length * 100 >= 36_000 && at2.length * 100 < 40_000, `after a 600-ms pause, ${at2.length * 100} of 40,000 bytes in four seconds`)
  t.equal(busiest(at2, 100), 10_000, 'and no second above the budget')
})

t.test('#35: headroom never offers more than the last second has room for', async (t) => {
  const clock = { now: 0 }
  const l = new ByteRateLimiter({ bytesPerSecond: 10_000, burstBytes: 5_000, clock: { now: () => clock.now }, everySecond: true })
  t.equal(l.headroom(), 5_000, 'idle: the burst')
  await l.take(5_000)
  clock.now = 400 // 4,000 bytes of schedule back: GCRA alone would offer 4,000 + … but the second holds 5,000 already
  t.equal(l.headroom(), 5_000 - 1_000, 'schedule: 4,000 ahead allowed')
  await l.take(4_000)
  clock.now = 900
  t.equal(l.headroom(), 1_000, 'the second has 9,000 in it: 1,000 left, though the schedule would allow 5,000')
  clock.now = 1002
  t.equal(l.headroom(), 1_000, 'a second and 2 ms later the first 5,000 are still counted (the window allows for the way to the wire)')
  clock.now = 1003
  t.equal(l.headroom(), 5_000, 'then they have left it: the burst again')
})

/** A loopback TCP pair: the client side wrapped in a ThrottledSocket, its raw writes recorded, the bytes the server side got. */
async function throttledPair(t: { teardown(fn: () => unknown): void }, limiters: ByteRateLimiter[]) {
  const got: Buffer[] = []
  const server = createServer((s) => s.on('data', (d: Buffer) => got.push(d)))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const raw = connect((server.address() as AddressInfo).port, '127.0.0.1')
  await new Promise((r) => raw.once('connect', r))
  const writes: number[] = []
  const write = raw.write.bind(raw)
  raw.write = (b: Buffer) => (writes.push(b.length), write(b))
  const socket = new ThrottledSocket(raw, limiters)
  t.teardown(() => socket.destroy())
  const send = (b: Buffer) => new Promise<void>((resolve, reject) => socket.write(b, (err) => (err ? reject(err) : resolve())))
  const received = async (n: number) => {
    while (Buffer.concat(got).length < n) await new Promise((r) => setTimeout(r, 5))
    return Buffer.concat(got)
  }
  return { writes, send, received }
}

t.test('#35: with the budget lifted a message goes to the socket in one write', async (t) => {
  const lifted = new ByteRateLimiter({ bytesPerSecond: 10e9 / 8, burstBytes: 0, clock: { now: () => Date.now() } })
  const { writes, send, received } = await throttledPair(t, [lifted])
  const body = randomBytes(60 * 1024)
  await send(body)
  t.same(writes, [body.length], 'one write of 60 KB (it was eight 8 KB slices)')
  t.ok((await received(body.length)).equals(body), 'the receiver has the same bytes')
})

t.test('#35: a shaped budget: the first write is its whole burst, then slices as it refills, never past it', async (t) => {
  const shaped = new ByteRateLimiter({ bytesPerSecond: 1_000_000, burstBytes: 16_384, clock: { now: () => Date.now() } })
  const { writes, send, received } = await throttledPair(t, [shaped])
  const body = randomBytes(64 * 1024)
  const t0 = Date.now()
  await send(body)
  t.equal(writes[0], 16_384, 'the idle budget grants its burst at once')
  t.ok(writes.length >= 5, `then pieces as the grant allows (${writes.join(', ')})`)
  t.ok(
    writes.every((n) => n <= 16_384),
    'no write larger than the burst',
  )
  t.ok(Date.now() - t0 >= 40, `64 KB at 1 MB/s with a 16 KB burst takes its time (${Date.now() - t0} ms)`)
  t.ok((await received(body.length)).equals(body), 'the receiver has the same bytes')
})
