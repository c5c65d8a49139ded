/**
 * The return-path listener under a flood of reports (issue #17).
 *
 *   npm run bench:returnpath [-- --reports 100000 --connections 8]
 *
 * `reports` DSNs (a Postfix-shaped RFC 3464 report, 2.5 KB, each to the VERP
 * address of its own statement) go to the box's listener over `connections`
 * SMTP connections of a client in a process of its own. Each is parsed,
 * classified, committed to the audit trail before its 250 and applied by the
 * ledger (the statement's recipient turns bounced, paper owed, webhook rows).
 * The statements exist in the ledger first (submitted and delivered).
 * Baseline, same run: the same client against an smtp-server that accepts
 * each report and discards it. RSS of this process is sampled every tenth of
 * the run, after a first tenth to warm up.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { fork } from 'node:child_process'
import pino from 'pino'
import { SMTPServer } from 'smtp-server'
import { AuditTrail } from '../firmware/audit/trail.ts'
import { ReturnPathListener } from '../firmware/return-path/listener.ts'
import { ReturnPathTokens } from '../firmware/return-path/verp.ts'
import { parseConfig } from '../firmware/config/load.ts'
import { EventHub } from '../firmware/events.ts'
import { BOX_KEYS } from '../firmware/keys/manifest.ts'
import { Ledger } from '../firmware/ledger/ledger.ts'
import { makeSelfSignedServerCert } from '../hal/crypto/selfsigned.ts'
import { benchHsm } from './host.ts'

const { values } = parseArgs({
  options: { reports: { type: 'string', default: '100000' }, connections: { type: 'string', default: '8' }, dir: { type: 'string' } },
})
const N = Number(values.reports)
const CONNECTIONS = Number(values.connections)
const root = mkdtempSync(join(values.dir ?? tmpdir(), 'sg-bench-returnpath-'))
const say = (s: string) => process.stderr.write(`${s}\n`)
const log = pino({ level: 'silent' })

const hsm = await benchHsm(join(root, 'hsm'))
await hsm.ensureKeys(BOX_KEYS)
const config = parseConfig({
  dataDir: join(root, 'data'),
  reports: { timeZone: 'UTC' },
  returnPath: { domains: [{ from: 'bank.example', returnPath: 'bounce.bank.example' }], listen: '127.0.0.1:0', reportsPerMinutePerClient: 100000 },
})
mkdirSync(config.dataDir, { recursive: true })
const clock = { now: () => Date.now() }
const trail = new AuditTrail({ config, log, hsm, clock })
await trail.start()
const ledger = new Ledger({ config, log, trail, events: trail, clock })
await ledger.start()
const events = new EventHub([trail])
const tokens = new ReturnPathTokens(hsm)
await tokens.keys()

// The statements the reports are about: submitted and delivered, in the ledger.
say(`${N} statements into the ledger …`)
const ids = Array.from({ length: N }, (_, i) => `AAAA${i.toString(36).padStart(8, '0')}`.slice(-12))
for (let i = 0; i < N; i++) {
  const id = ids[i]!
  const rcpt = `customer${i}@example.net`
  trail.emit({ type: 'submission.accepted', id, account: 'statements', clientAddress: '10.0.0.5', tls: 'TLSv1.3', recipients: [rcpt], bytes: 60_000 })
  trail.emit({
    type: 'delivery.attempt',
    id,
    kind: 'statement',
    outcome: 'delivered',
    recipients: [rcpt],
    mx: 'mx.example.net',
    sourceIp: '192.0.2.11',
    reply: '250 ok',
    tls: 'TLSv1.3',
  })
  if (i % 5000 === 4999) await trail.flush()
}
await trail.flush()
await ledger.caughtUp()

const report = (i: number) => {
  const to = `${tokens.localPart({ kind: 'b', id: ids[i]!, recipient: 0 })}@bounce.bank.example`
  return (
    `Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\nTo: ${to}\r\nSubject: Undelivered Mail Returned to Sender\r\n` +
    `Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="B.${i}"\r\n\r\n` +
    `--B.${i}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThis is the mail system at host mx.example.net.\r\n\r\n` +
    `I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients. It's attached below.\r\n\r\n` +
    `<customer${i}@example.net>: host mbox.example.net[192.0.2.80] said: 550 5.1.1\r\n` +
    `    <customer${i}@example.net>: Recipient address rejected: User unknown\r\n\r\n` +
    `--B.${i}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\nArrival-Date: Thu, 26 Nov 2026 10:00:00 +0800\r\n\r\n` +
    `Final-Recipient: rfc822; customer${i}@example.net\r\nOriginal-Recipient: rfc822;customer${i}@example.net\r\n` +
    `Action: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mbox.example.net\r\n` +
    `Diagnostic-Code: smtp; 550 5.1.1 <customer${i}@example.net>: Recipient address\r\n    rejected: User unknown\r\n\r\n` +
    `--B.${i}\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: statements@bank.example\r\nTo: customer${i}@example.net\r\n` +
    `Subject: =?UTF-8?B?5pyJ5YO56K2J5Yi45pyI5bCN5biz5Zau?=\r\n` +
    `Message-ID: <${ids[i]}@bank.example>\r\nDate: Tue, 24 Nov 2026 09:00:00 +0800\r\n${'X-Filler: statement headers\r\n'.repeat(20)}\r\n--B.${i}--\r\n`
  )
}
const reports = Array.from({ length: N }, (_, i) => ({ to: /^To: (\S+)\r$/m.exec(report(i))![1]!, raw: report(i) }))
const reportBytes = reports[0]!.raw.length
say(`reports: ${N}, ${Math.round(reportBytes / 100) / 10} KB each, ${CONNECTIONS} connections`)

/** The reports, one JSON line each, for the client process. */
const reportsFile = join(root, 'reports.jsonl')
writeFileSync(reportsFile, reports.map((r) => JSON.stringify(r)).join('\n'))
reports.length = 0

/**
 * Sends every report to `port` from a client in a process of its own (its memory is not
 * this process's); resolves with its seconds and this process's RSS at every tenth.
 */
function flood(port: number): Promise<{ seconds: number; rss: number[]; heap: number[] }> {
  const rss: number[] = []
  const heap: number[] = []
  const client = fork(
    '-e',
    [
      `const { readFileSync } = require('node:fs')
       const nodemailer = require('nodemailer')
       const reports = readFileSync(${JSON.stringify(reportsFile)}, 'utf8').split('\\n').map((l) => JSON.parse(l))
       const t = nodemailer.createTransport({
         host: '127.0.0.1', port: ${port}, secure: false, ignoreTLS: true, pool: true, maxConnections: ${CONNECTIONS}, maxMessages: Infinity,
       })
       let next = 0, done = 0
       const started = process.hrtime.bigint()
       const one = async () => {
         while (next < reports.length) {
           const r = reports[next++]
           await t.sendMail({ envelope: { from: '', to: [r.to] }, raw: r.raw })
           if (++done % Math.ceil(reports.length / 10) === 0) process.send({ progress: done })
         }
       }
       Promise.all(Array.from({ length: ${CONNECTIONS} * 2 }, one)).then(() => {
         process.send({ seconds: Number(process.hrtime.bigint() - started) / 1e9 }, () => process.exit(0))
       }, (err) => process.send({ error: String((err && err.stack) || err) }, () => process.exit(1)))`,
    ],
    { execArgv: [], cwd: join(import.meta.dirname, '..') },
  )
  return new Promise((resolve, reject) => {
    client.on('message', (m: { progress?: number; seconds?: number; error?: string }) => {
      if (m.progress) {
        // After a full collection when the run allows it (npm run bench:returnpath does): what stays, not what waits for the collector.
        ;(globalThis as { gc?: () => void }).gc?.()
        rss.push(process.memoryUsage().rss)
        heap.push(process.memoryUsage().heapUsed)
      }
      if (m.error) reject(new Error(m.error))
      if (m.seconds !== undefined) resolve({ seconds: m.seconds, rss, heap })
    })
    client.on('error', reject)
  })
}

// Baseline: accept and discard.
const cert = makeSelfSignedServerCert({ hostname: 'localhost', addresses: ['127.0.0.1'] })
const sink = new SMTPServer({
  disabledCommands: ['AUTH', 'STARTTLS'],
  authOptional: true,
  disableReverseLookup: true,
  logger: false,
  key: cert.keyPem,
  cert: cert.certPem,
  onData: (stream, _s, cb) => {
    stream.on('data', () => {})
    stream.on('end', () => cb())
  },
})
await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r))
const sinkPort = (sink.server.address() as { port: number }).port
say('baseline: accept and discard …')
const base = await flood(sinkPort)
await new Promise<void>((r) => sink.close(() => r()))
say(`  ${Math.round(N / base.seconds)} reports/s`)

// The box's listener: parse, classify, audit trail before the 250, ledger.
const listener = new ReturnPathListener({
  config,
  tokens,
  events,
  log,
  clock,
  tls: () => ({ key: cert.keyPem, cert: cert.certPem, minVersion: 'TLSv1.2' }),
})
await listener.start()
say('the return-path listener …')
const ours = await flood(listener.address.port)
await trail.flush()
await ledger.caughtUp()
const bounced = await ledger.store.get<{ n: number }>("SELECT COUNT(*) AS n FROM recipients WHERE state = 'bounced' AND paper_owed_at IS NOT NULL")
await listener.stop()
await ledger.stop()
await trail.stop()
say(`  ${Math.round(N / ours.seconds)} reports/s; ${bounced?.n} recipients bounced with paper owed`)

const mb = (b: number) => Math.round(b / 1048576)
const rss = ours.rss.slice(1).map(mb)
const result = {
  reports: N,
  connections: CONNECTIONS,
  reportBytes,
  cpus: cpus().length,
  baselineReportsPerSecond: Math.round(N / base.seconds),
  reportsPerSecond: Math.round(N / ours.seconds),
  ratio: Math.round((base.seconds / ours.seconds) * 1000) / 1000,
  bouncedWithPaperOwed: Number(bounced?.n ?? 0),
  rssMiBPerTenth: rss,
  rssGrowthMiB: rss.length ? rss[rss.length - 1]! - Math.min(...rss) : 0,
  heapMiBPerTenth: ours.heap.slice(1).map(mb),
  target: '≥ 500 reports/s, RSS flat over 100,000 reports',
}
say(JSON.stringify(result, null, 2))
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true })
writeFileSync(join(import.meta.dirname, 'results', 'returnpath.json'), `${JSON.stringify(result, null, 2)}\n`)
await hsm.close()
rmSync(root, { recursive: true, force: true })
