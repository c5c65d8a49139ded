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
