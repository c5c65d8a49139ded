/**
 * The encrypted spool at scale (issue: Encrypted durable spool).
 *
 *   npm run bench:spool [-- --count 1000000 --concurrency 64 --baseline 20000]
 *
 * 1. Baseline, same run: plain 4 KB files written and fdatasync'd with the same
 *    concurrency (no encryption, no HSM): what the disk allows.
 * 2. Enqueue `count` messages of 4 KB through Spool.accept (AES-256-GCM, data
 *    key wrapped in SoftHSM, fsync before resolve) from `concurrency` callers.
 * 3. Restart: a fresh Spool on the same directory; time until it is ready to
 *    accept and deliver, and the process's resident memory with all of it indexed.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { parseConfig } from '../firmware/config/load.ts'
import { newQueueId } from '../firmware/spool/ids.ts'
import { Spool } from '../firmware/spool/spool.ts'
import { benchHsm } from './host.ts'

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000000' },
    concurrency: { type: 'string', default: '64' },
    baseline: { type: 'string', default: '20000' },
    dir: { type: 'string' },
    'restart-only': { type: 'string' },
  },
})

if (values['restart-only']) {
  // Phase 3 runs in a fresh process, so resident memory is the restarted box's alone.
  const dataDir = values['restart-only']
  const t0 = process.hrtime.bigint()
  const hsm = await benchHsm(join(dataDir, 'hsm'))
  const config = parseConfig({ dataDir, spool: { verifyOnStart: false } })
  const spool = new Spool({ config, log: pino({ level: 'silent' }), hsm, events: { emit() {} }, clock: { now: () => Date.now() } })
  await spool.start()
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  globalThis.gc?.()
  const m = process.memoryUsage()
  // Claiming due mail with everything queued. The first half claimed is then deferred
  // an hour (a destination that is down); claims must then find the other half behind it.
  const claim = (limit: number) => {
    const ids: string[] = []
    const t = process.hrtime.bigint()
    while (ids.length < limit) {
      const got = spool.due(Date.now(), Math.min(40, limit - ids.length))
      if (!got.length) break
      for (const e of got) ids.push(e.id)
    }
    return { ids, micros: Number(process.hrtime.bigint() - t) / 1e3 / Math.max(ids.length, 1) }
  }
  const first = claim(Math.floor(spool.size / 2))
  for (let i = 0; i < first.ids.length; i += 2000)
    await Promise.all(first.ids.slice(i, i + 2000).map((id) => spool.defer(id, Date.now() + 3_600_000, 'bench: destination down')))
  const rest = claim(Infinity)
  process.stdout.write(
    JSON.stringify({
      restartSeconds: seconds,
      indexed: spool.size,
      rss: m.rss,
      heapUsed: m.heapUsed,
      external: m.external + m.arrayBuffers,
      claimMicros: first.micros,
      claimBehindDeferredMicros: rest.micros,
      claimedBehindDeferred: rest.ids.length,
      deferred: first.ids.length,
    }),
  )
  await spool.stop()
  await hsm.close()
  process.exit(0)
}
const count = Number(values.count)
const concurrency = Number(values.concurrency)
const baselineCount = Number(values.baseline)
const root = mkdtempSync(join(values.dir ?? tmpdir(), 'sg-bench-spool-'))
const body = Buffer.alloc(4096, 'x')

async function pool(n: number, fn: (i: number) => Promise<unknown>, progress?: (done: number) => void): Promise<number> {
  let next = 0
  let done = 0
  const start = process.hrtime.bigint()
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < n; i = next++) {
        await fn(i)
        if (++done % 50_000 === 0) progress?.(done)
      }
    }),
  )
  return n / (Number(process.hrtime.bigint() - start) / 1e9)
}

// 1. Baseline: the disk alone.
mkdirSync(join(root, 'plain'))
const plainRate = await pool(baselineCount, async (i) => {
  const fh = await open(join(root, 'plain', `f${i}`), 'w', 0o600)
  await fh.writeFile(body)
  await fh.datasync()
  await fh.close()
})
rmSync(join(root, 'plain'), { recursive: true })

// 2. Enqueue through the spool.
const hsm = await benchHsm(join(root, 'hsm'))
const config = parseConfig({ dataDir: root, spool: { verifyOnStart: false, maxMessages: count + 1, reservePercent: 1 } })
const deps = { config, log: pino({ level: 'silent' }), hsm, events: { emit() {} }, clock: { now: () => Date.now() } }
const spool = new Spool(deps)
await spool.start()
const enqueueRate = await pool(
  count,
  (i) =>
    spool.accept({
      envelope: {
        id: newQueueId(),
        mailFrom: 'statements@bank.example',
        rcptTo: [`c${i}@example.net`],
        account: 'firm',
        clientAddress: '127.0.0.1',
        tls: undefined,
        receivedAt: 0,
      },
      message: body,
    }),
  (done) => process.stderr.write(`  enqueued ${done}/${count}\n`),
)
await spool.stop()

await hsm.close()

// 3. Restart with everything queued, in a fresh process.
const restart = JSON.parse(
  execFileSync(process.execPath, [...process.execArgv.filter((a) => a.startsWith('--max-semi')), '--expose-gc', import.meta.filename, '--restart-only', root], {
    encoding: 'utf8',
  }),
) as {
  restartSeconds: number
  indexed: number
  rss: number
  heapUsed: number
  external: number
  claimMicros: number
  claimBehindDeferredMicros: number
  claimedBehindDeferred: number
  deferred: number
}
const summary = {
  date: new Date().toISOString(),
  machine: `${cpus().length} cores, ${cpus()[0]?.model}`,
  node: process.version,
  count,
  concurrency,
  messageBytes: body.length,
  baselinePlainFsyncPerSecond: Math.round(plainRate),
  enqueuePerSecond: Math.round(enqueueRate),
  enqueueVsPlainDisk: Number((enqueueRate / plainRate).toFixed(2)),
  restartSeconds: Number(restart.restartSeconds.toFixed(1)),
  indexedAfterRestart: restart.indexed,
  residentMemoryMB: Math.round(restart.rss / 1048576),
  heapUsedMB: Math.round(restart.heapUsed / 1048576),
  externalMB: Math.round(restart.external / 1048576),
  claimDueMicrosecondsPerMessage: Number(restart.claimMicros.toFixed(2)),
  claimDueBehindDeferredMicrosecondsPerMessage: Number(restart.claimBehindDeferredMicros.toFixed(2)),
  deferredAheadOfThem: restart.deferred,
  targets: { enqueuePerSecond: 2000, residentMemoryMBWith1M: 300, restartSecondsWith1M: 30 },
}
process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`)
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true })
writeFileSync(join(import.meta.dirname, 'results', 'spool.json'), `${JSON.stringify(summary, null, 2)}\n`)
rmSync(root, { recursive: true, force: true })
