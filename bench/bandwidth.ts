/**
 * The byte budget under a real load, measured at the receiver (M3; #35).
 *
 *   npm run bench:bandwidth [-- --count 600 --caps 10 --tls on,off --rounds 3]
 *
 * For each cap (Mbit/s), with and without STARTTLS at the receiver, `rounds`
 * times: a fresh box in this process — submission, S/MIME and DKIM signing in
 * a SoftHSM token, the encrypted spool, delivery over four loopback egress
 * addresses with the shipped connection limits — receives `count` 60 KB
 * statements from nodemailer, queues them, then delivers them to a receiving
 * MX in a process of its own. In front of that MX a TCP relay, in a third
 * process that does nothing else, counts every byte that arrives (TLS records
 * and SMTP commands included: what the budget counts) per 100 ms. Judged against #35's targets at the receiver: mean from
 * first to last byte ≥ 99 % of the cap, busiest 1-second window ≤ 100.5 %;
 * each round's figures are printed, the worst judged, exit 1 on a miss. The
 * mail content the MX received (goodput) is reported beside them.
 */
import { fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect, createServer, type AddressInfo } from 'node:net'
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
  options: {
    count: { type: 'string', default: '600' },
    caps: { type: 'string', default: '10' },
    tls: { type: 'string', default: 'on,off' },
    rounds: { type: 'string', default: '3' },
    receiver: { type: 'boolean' },
    'receiver-tls': { type: 'string', default: 'on' },
    relay: { type: 'string' },
  },
})
const TARGETS = { meanShareOfCapAtLeast: 0.99, busiestSecondShareOfCapAtMost: 1.005 }

if (values.receiver) {
  // The receiving MX runs in its own process (as a real one would) and counts the mail content.
  const content = { first: 0, last: 0, total: 0 }
  let messages = 0
  const { certPem, keyPem } = makeSelfSignedServerCert({ hostname: 'mx.bench' })
  const rx = new SMTPServer({
    cert: certPem,
    key: keyPem,
    disabledCommands: values['receiver-tls'] === 'on' ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    disableReverseLookup: true,
    logger: false,
    size: 100 << 20,
    onData(stream, _s, cb) {
      stream.on('data', (c: Buffer) => {
        const now = Date.now()
        if (!content.first) content.first = now
        content.last = now
        content.total += c.length
      })
      stream.on('end', () => {
        messages++
        process.send!({ messages })
        cb()
      })
    },
  })
  rx.on('error', () => {})
  await new Promise<void>((r) => rx.listen(0, '127.0.0.1', r))
  process.send!({ port: (rx.server.address() as AddressInfo).port })
  process.on('message', () => process.send!({ report: { messages, content } }, () => process.exit(0)))
}

if (values.relay) {
  // In front of the MX, in a process of its own that does nothing else (so the MX's TLS and
  // garbage collection never hold the clock back), a relay counts the bytes that arrive per
  // 100 ms, as the wire has them.
  const wire: number[] = []
  let first = 0
  let last = 0
  let total = 0
  const relay = createServer((client) => {
    const upstream = connect(Number(values.relay), '127.0.0.1')
    client.on('data', (c: Buffer) => {
      const now = Date.now()
      if (!first) first = now
      last = now
      total += c.length
      const b = Math.floor((now - first) / 100)
      wire[b] = (wire[b] ?? 0) + c.length
    })
    // Read as fast as bytes arrive, whatever the MX's pace: a pipe would stop reading while the MX
    // is busy, and the bytes held back meanwhile would be counted later, in a heap, in one window.
    client.on('data', (c: Buffer) => void upstream.write(c))
    client.on('end', () => upstream.end())
    upstream.pipe(client)
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
  })
  relay.listen(0, '127.0.0.1', () => process.send!({ port: (relay.address() as AddressInfo).port }))
  process.on('message', () => {
    process.send!({ report: { buckets: Array.from(wire, (b) => b ?? 0), first, last, total } }, () => process.exit(0))
  })
}

const count = Number(values.count)
const caps = values.caps.split(',').map(Number)
const rounds = Number(values.rounds)
if (values.receiver || values.relay) await new Promise(() => {}) // the receiver's children never run the rest
const log = pino({ level: 'silent' })
const clock = { now: () => Date.now() }
const root = mkdtempSync(join(tmpdir(), 'sg-bench-bw-'))

// One token for all runs: the firm's S/MIME key made inside it, certified by a throwaway CA.
const hsm = await firmToken(root, 4)
const passwordHash = await hashPassword('bench password 1234', { ln: 14, r: 8, p: 1 })
const pdf = randomBytes(40_000).toString('base64').replace(/.{76}/g, '$&\r\n')

async function runCap(mbit: number, tls: boolean, round: number) {
  const child = fork(import.meta.filename, ['--receiver', '--receiver-tls', tls ? 'on' : 'off'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  let messages = 0
  const mxPort = await new Promise<number>((resolve) =>
    child.on('message', (m: { port?: number; messages?: number }) => {
      if (m.port) resolve(m.port)
      if (m.messages) messages = m.messages
    }),
  )
  const relay = fork(import.meta.filename, ['--relay', String(mxPort)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const rxPort = await new Promise<number>((resolve) => relay.on('message', (m: { port?: number }) => m.port && resolve(m.port)))

  const dataDir = join(root, `box-${mbit}-${tls ? 'tls' : 'plain'}-${round}`)
  mkdirSync(dataDir)
  const config = parseConfig({
    dataDir,
    submission: { starttlsPort: 0, implicitTlsPort: 0, accounts: [{ name: 'bench', passwordHash }], maxClients: 100 },
    signing: { domains: [{ domain: 'bank.example', smimeKey: 'smime/bank', dkimSelector: 'bench' }] },
    spool: { verifyOnStart: false },
    delivery: {
      routes: [{ domain: '*', host: '127.0.0.1', port: rxPort }],
      bandwidthBitsPerSecond: mbit * 1_000_000,
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
  const ask = <R>(p: typeof child) =>
    new Promise<R>((resolve) => {
      p.on('message', (m: { report?: R }) => m.report && resolve(m.report))
      p.send('report')
    })
  const wire = await ask<{ buckets: number[]; first: number; last: number; total: number }>(relay)
  const mx = await ask<{ content: { first: number; last: number; total: number } }>(child)
  const report = { ...wire, content: mx.content }
  return figures({ mbit, tls, submittedIn, granted, ...report, passed: delivery.limiter.passed })
}

const results: (ReturnType<typeof figures> & { loadAtStart: string })[] = []
for (const cap of caps) {
  for (const tls of values.tls.split(',').map((x) => x === 'on')) {
    for (let round = 1; round <= rounds; round++) {
      const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
      process.stderr.write(`cap ${cap} Mbit/s, ${tls ? 'STARTTLS' : 'plain SMTP'}, round ${round} of ${rounds}: ${count} statements (load ${load})… `)
      const r = { ...(await runCap(cap, tls, round)), loadAtStart: load }
      process.stderr.write(`mean ${(r.meanShareOfCap * 100).toFixed(1)} %, busiest second ${(r.busiestSecondShareOfCap * 100).toFixed(1)} %\n`)
      results.push(r)
    }
  }
}
// The worst round of each cap and variant, judged.
const verdicts = [...new Set(results.map((r) => `${r.capMbit}|${r.tls}`))].flatMap((k) => {
  const mine = results.filter((r) => `${r.capMbit}|${r.tls}` === k)
  const name = `${mine[0]!.capMbit} Mbit/s, ${mine[0]!.tls ? 'STARTTLS' : 'plain SMTP'}, worst of ${mine.length}`
  const mean = Math.min(...mine.map((r) => r.meanShareOfCap))
  const busiest = Math.max(...mine.map((r) => r.busiestSecondShareOfCap))
  return [
    {
      figure: `${name}: mean at the receiver, first to last byte`,
      value: mean,
      target: `≥ ${TARGETS.meanShareOfCapAtLeast}`,
      ok: mean >= TARGETS.meanShareOfCapAtLeast,
    },
    {
      figure: `${name}: busiest 1-second window at the receiver`,
      value: busiest,
      target: `≤ ${TARGETS.busiestSecondShareOfCapAtMost}`,
      ok: busiest <= TARGETS.busiestSecondShareOfCapAtMost,
    },
  ]
})
const summary = {
  date: new Date().toISOString(),
  machine: `${cpus().length} cores, ${cpus()[0]?.model}`,
  node: process.version,
  results,
  targets: TARGETS,
  verdicts,
}
process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`)
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true })
writeFileSync(join(import.meta.dirname, 'results', 'bandwidth.json'), `${JSON.stringify(summary, null, 2)}\n`)
for (const v of verdicts) process.stderr.write(`${v.ok ? 'ok  ' : 'FAIL'} ${v.figure}: ${(v.value * 100).toFixed(1)} % of the cap (target ${v.target})\n`)
if (verdicts.some((v) => !v.ok)) process.exitCode = 1
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

/** The run's figures at the receiver: the bytes that arrived against the cap, mean and busiest second; the mail content apart. */
function figures(r: {
  mbit: number
  tls: boolean
  submittedIn: number
  granted: number[]
  buckets: number[]
  first: number
  last: number
  total: number
  content: { first: number; last: number; total: number }
  passed: number
}) {
  const { mbit, submittedIn, granted, buckets, first, last, total, content, passed } = r
  const capBytes = (mbit * 1_000_000) / 8
  const seconds = (last - first) / 1000
  const windows = (xs: number[]) => Array.from({ length: Math.max(0, xs.length - 9) }, (_, i) => xs.slice(i, i + 10).reduce((a, b) => a + (b ?? 0), 0))
  const share = (x: number) => Number(x.toFixed(4))
  return {
    capMbit: mbit,
    tls: r.tls,
    statements: count,
    submittedInSeconds: Number(submittedIn.toFixed(1)),
    deliveredInSeconds: Number(seconds.toFixed(1)),
    meanShareOfCap: share(total / seconds / capBytes),
    busiestSecondShareOfCap: share(Math.max(...windows(buckets)) / capBytes),
    contentGoodputShareOfCap: share(content.total / ((content.last - content.first) / 1000) / capBytes),
    senderBusiestSecondShareOfCap: share(Math.max(...windows(granted)) / capBytes),
    bytesThroughLimiter: passed,
    bytesAtReceiver: total,
    contentBytesReceived: content.total,
    perSecondShares: Array.from({ length: Math.floor(buckets.length / 10) }, (_, i) =>
      Number((buckets.slice(i * 10, i * 10 + 10).reduce((a, b) => a + b, 0) / capBytes).toFixed(3)),
    ),
  }
}
