/**
 * The byte budget under a real load (issue: Delivery engine, M3).
 *
 *   npm run bench:bandwidth [-- --count 2000 --caps 10,100]
 *
 * For each cap (Mbit/s): a fresh box in this process — submission, S/MIME and
 * DKIM signing in a SoftHSM token, the encrypted spool, delivery over four
 * loopback egress addresses with STARTTLS — receives `count` 60 KB statements
 * from nodemailer, queues them, then delivers them to a loopback receiver that
 * records the bytes it gets per 100 ms. Reported: mean goodput as a share of the cap, and
 * the busiest 1-second window as a share of the cap.
 */
import { fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import nodemailer from 'nodemailer'
import pino from 'pino'
import { SMTPServer } from 'smtp-server'
import { makeSelfSignedServerCert } from '../hal/crypto/selfsigned.ts'
import { parseConfig } from '../firmware/config/load.ts'
import { AuditCopyHandoff } from '../firmware/delivery/audit-copy.ts'
import { DeliveryEngine } from '../firmware/delivery/engine.ts'
import { StagedHandoff } from '../firmware/pipeline/stage.ts'
import { SigningStage } from '../firmware/pipeline/stages/signing.ts'
import { Spool } from '../firmware/spool/spool.ts'
import { hashPassword } from '../hal/crypto/password.ts'
import { SubmissionServer } from '../firmware/submission/server.ts'
import { firmToken } from './firm-token.ts'

const { values } = parseArgs({
  options: { count: { type: 'string', default: '2000' }, caps: { type: 'string', default: '10,100' }, receiver: { type: 'boolean' } },
})

if (values.receiver) {
  // The receiving MX runs in its own process (as a real one would), recording bytes per 100 ms.
  const buckets: number[] = []
  let first = 0
  let last = 0
  let total = 0
  let messages = 0
  const { certPem, keyPem } = makeSelfSignedServerCert({ hostname: 'mx.bench' })
  const rx = new SMTPServer({
    cert: certPem,
    key: keyPem,
    disabledCommands: ['AUTH'],
    disableReverseLookup: true,
    logger: false,
    size: 100 << 20,
    onData(stream, _s, cb) {
      stream.on('data', (c: Buffer) => {
        const now = Date.now()
        if (!first) first = now
        last = now
        total += c.length
        const b = Math.floor((now - first) / 100)
        buckets[b] = (buckets[b] ?? 0) + c.length
      })
      stream.on('end', () => {
        messages++
        process.send!({ messages })
        cb()
      })
    },
  })
  rx.on('error', () => {})
  rx.listen(0, '127.0.0.1', () => process.send!({ port: (rx.server.address() as AddressInfo).port }))
  process.on('message', () => {
    process.send!({ report: { buckets: Array.from(buckets, (b) => b ?? 0), first, last, total, messages } }, () => process.exit(0))
  })
}

const count = Number(values.count)
const caps = values.caps.split(',').map(Number)
if (values.receiver) await new Promise(() => {}) // the receiver child never runs the rest
const log = pino({ level: 'silent' })
const clock = { now: () => Date.now() }
const root = mkdtempSync(join(tmpdir(), 'sg-bench-bw-'))

// One token for all runs: the firm's S/MIME key made inside it, certified by a throwaway CA.
const hsm = await firmToken(root, 4)
const passwordHash = await hashPassword('bench password 1234', { ln: 14, r: 8, p: 1 })
const pdf = randomBytes(40_000).toString('base64').replace(/.{76}/g, '$&\r\n')

async function runCap(mbit: number) {
  const child = fork(import.meta.filename, ['--receiver'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  let messages = 0
  const rxPort = await new Promise<number>((resolve) =>
    child.on('message', (m: { port?: number; messages?: number }) => {
      if (m.port) resolve(m.port)
      if (m.messages) messages = m.messages
    }),
  )

  const dataDir = join(root, `box-${mbit}`)
  mkdirSync(dataDir)
  const config = parseConfig({
    dataDir,
    submission: { starttlsPort: 0, implicitTlsPort: 0, accounts: [{ name: 'bench', passwordHash }], maxClients: 100 },
    signing: { domains: [{ domain: 'bank.example', smimeKey: 'smime/bank', dkimSelector: 'bench' }] },
    spool: { verifyOnStart: false },
    delivery: {
      routes: [{ domain: '*', host: '127.0.0.1', port: rxPort }],
      bandwidthBitsPerSecond: mbit * 1_000_000,
      maxConnections: 32,
      perDestinationConnections: 16,
    },
  })
  const events = { emit() {} }
  const spool = new Spool({ config, log, hsm, events, clock })
  const signing = new SigningStage({ config, log, hsm, clock, events: { emit: () => {} } })
  const delivery = new DeliveryEngine({ config, log, spool, events, clock })
  const submission = new SubmissionServer({
    config,
    log,
    handoff: new StagedHandoff([signing], new AuditCopyHandoff(spool, config)),
    clock,
    events: { emit: () => {} },
  })
  // Delivery starts once the statements are queued, so the figure measures the egress shaping,
  // not how fast two cores can also take in, sign and spool at the same time.
  for (const c of [spool, signing, submission]) await c.start()

  const started = Date.now()
  await submitAll(submission.endpoints.starttls.port, dataDir)
  const submittedIn = (Date.now() - started) / 1000
  await delivery.start()
  // The sender's own view: bytes granted by the limiter per 100 ms.
  const granted: number[] = []
  let lastPassed = delivery.limiter.passed
  const sampler = setInterval(() => {
    granted.push(delivery.limiter.passed - lastPassed)
    lastPassed = delivery.limiter.passed
  }, 100)
  while (messages < count) await new Promise((r) => setTimeout(r, 50))
  clearInterval(sampler)
  for (const c of [submission, delivery, signing, spool]) await c.stop()
  const { buckets, first, last, total } = await new Promise<{ buckets: number[]; first: number; last: number; total: number }>((resolve) => {
    child.on('message', (m: { report?: { buckets: number[]; first: number; last: number; total: number } }) => m.report && resolve(m.report))
    child.send('report')
  })

  return figures({ mbit, submittedIn, granted, buckets, first, last, total, passed: delivery.limiter.passed })
}

const results = []
for (const cap of caps) {
  process.stderr.write(`cap ${cap} Mbit/s: ${count} statements…\n`)
  results.push(await runCap(cap))
}
const summary = {
  date: new Date().toISOString(),
  machine: `${cpus().length} cores, ${cpus()[0]?.model}`,
  node: process.version,
  results,
  targets: { meanGoodputShareOfCapAtLeast: 0.97, busiestSecondShareOfCapAtMost: 1.01 },
}
process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`)
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true })
writeFileSync(join(import.meta.dirname, 'results', 'bandwidth.json'), `${JSON.stringify(summary, null, 2)}\n`)
await hsm.close()
rmSync(root, { recursive: true, force: true })

/** The batch, submitted over a pool of eight connections, as fast as the box takes it. */
async function submitAll(port: number, dataDir: string): Promise<void> {
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    requireTLS: true,
    pool: true,
    maxConnections: 8,
    maxMessages: Infinity,
    auth: { user: 'bench', pass: 'bench password 1234' },
    tls: { ca: readFileSync(join(dataDir, 'tls', 'submission.crt')), servername: 'localhost' },
  })
  await Promise.all(
    Array.from({ length: count }, (_, i) =>
      transport.sendMail({
        envelope: { from: 'statements@bank.example', to: [`c${i}@example.net`] },
        raw:
          `From: statements@bank.example\r\nTo: c${i}@example.net\r\nSubject: statement ${i}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; ` +
          `boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nYour statement.\r\n--b\r\nContent-Type: application/pdf; ` +
          `name="s.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n${pdf}\r\n--b--\r\n`,
      }),
    ),
  )
  transport.close()
}

/** The run's figures: goodput against the cap, its busiest second as the receiver and the sender saw it. */
function figures(r: { mbit: number; submittedIn: number; granted: number[]; buckets: number[]; first: number; last: number; total: number; passed: number }) {
  const { mbit, submittedIn, granted, buckets, first, last, total, passed } = r
  const capBytes = (mbit * 1_000_000) / 8
  const seconds = (last - first) / 1000
  let worst = 0
  for (let i = 0; i + 10 <= buckets.length; i++)
    worst = Math.max(
      worst,
      buckets.slice(i, i + 10).reduce((a, b) => a + (b ?? 0), 0),
    )
  return {
    capMbit: mbit,
    statements: count,
    submittedInSeconds: Number(submittedIn.toFixed(1)),
    deliveredInSeconds: Number(seconds.toFixed(1)),
    goodputMbit: Number(((total * 8) / seconds / 1e6).toFixed(2)),
    meanGoodputShareOfCap: Number((total / seconds / capBytes).toFixed(3)),
    busiestSecondShareOfCap: Number((worst / capBytes).toFixed(3)),
    senderBusiestSecondShareOfCap: Number(
      (Math.max(...Array.from({ length: Math.max(0, granted.length - 9) }, (_, i) => granted.slice(i, i + 10).reduce((a, b) => a + b, 0))) / capBytes).toFixed(
        3,
      ),
    ),
    wireBytesThroughLimiter: passed,
    contentBytesReceived: total,
    senderPerSecondShares: Array.from({ length: Math.floor(granted.length / 10) }, (_, i) =>
      Number((granted.slice(i * 10, i * 10 + 10).reduce((a, b) => a + b, 0) / capBytes).toFixed(3)),
    ),
    perSecondShares: Array.from({ length: Math.floor(buckets.length / 10) }, (_, i) =>
      Number((buckets.slice(i * 10, i * 10 + 10).reduce((a, b) => a + b, 0) / capBytes).toFixed(3)),
    ),
  }
}
