import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parseArgs } from 'node:util'
import nodemailer from 'nodemailer'
import { SMTPServer } from 'smtp-server'
import { systemClock } from '../hal/clock.ts'
import { makeSelfSignedServerCert } from '../hal/crypto/selfsigned.ts'
import { devCaFile } from '../firmware/keys/dev-smime.ts'
import { hsmFromConfig } from '../firmware/keys/service.ts'
import { field, readHeader } from '../firmware/mime/header.ts'
import { dkimRecords } from '../firmware/signing/dns.ts'
import { failer, printHelp, toolConfig } from './cli.ts'

const USAGE = `usage: npm run demo [-- --count 200 --concurrency 8 --ca FILE]

Shows statements flowing through a running development box (npm start in another
terminal): starts the loopback receiver the development config routes all mail to
(127.0.0.1:2526), submits a batch with a real SMTP client (nodemailer), draws
progress until every statement has arrived, then checks every delivered mail with
tools independent of the box: the S/MIME signature with openssl cms -verify against
the development CA (--ca: another CA file), the DKIM signature with python3-dkim
against the records npm run dkim -- dns prints. A mail that fails either check is
named, and the demo exits 1.
`
const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '100' },
    concurrency: { type: 'string', default: '8' },
    config: { type: 'string' },
    ca: { type: 'string' },
    help: { type: 'boolean' },
  },
})
if (values.help) printHelp(USAGE, values.config)
const fail = failer('demo')
const count = Number(values.count)
if (!Number.isInteger(count) || count < 1) fail('--count must be a positive whole number', 2)
const config = toolConfig('demo', values.config)
const run = promisify(execFile)

const passwordFile = join(config.dataDir, 'secrets', 'submission-statements.password')
if (!existsSync(passwordFile)) fail(`no development box in ${config.dataDir}; run "npm start" first (in another terminal)`)
const password = readFileSync(passwordFile, 'utf8').trim()

const out = mkdtempSync(join(tmpdir(), 'sg-demo-'))
process.on('exit', () => rmSync(out, { recursive: true, force: true }))
const received: { file: string; statementId: string; at: number }[] = []
const { certPem, keyPem } = makeSelfSignedServerCert({ hostname: 'demo-mx.localhost' })
const receiver = new SMTPServer({
  cert: certPem,
  key: keyPem,
  disabledCommands: ['AUTH'],
  disableReverseLookup: true,
  logger: false,
  onData(stream, _session, cb) {
    const chunks: Buffer[] = []
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('end', () => {
      const data = Buffer.concat(chunks)
      const file = join(out, `${received.length}.eml`)
      writeFileSync(file, data)
      received.push({ file, statementId: field(readHeader(data), 'x-statement-id') ?? '(no X-Statement-ID)', at: Date.now() })
      cb()
    })
  },
})
receiver.on('error', () => {}) // a client that drops its connection is not the demo's problem
await new Promise<void>((r, reject) => {
  receiver.server.once('error', (err: NodeJS.ErrnoException) =>
    reject(err.code === 'EADDRINUSE' ? new Error('127.0.0.1:2526 is taken (another demo running?)') : err),
  )
  receiver.listen(2526, '127.0.0.1', () => r())
}).catch((err: Error) => fail(err.message))

const port = config.submission.starttlsPort
const transport = nodemailer.createTransport({
  host: '127.0.0.1',
  port,
  requireTLS: true,
  pool: true,
  maxConnections: Number(values.concurrency),
  auth: { user: 'statements', pass: password },
  tls: { ca: readFileSync(join(config.dataDir, 'tls', 'submission.crt')), servername: 'localhost' },
})

const started = Date.now()
const batch = `demo-${new Date(started).toISOString().slice(0, 19).replace(/[-:T]/g, '')}`
let submitted = 0
let refused = 0
const bar = (n: number) => `${'█'.repeat(Math.round((n / count) * 30)).padEnd(30, '░')} ${String(n).padStart(String(count).length)}/${count}`
const draw = () => {
  const secs = (Date.now() - started) / 1000
  process.stderr.write(
    `\r  submitted ${bar(submitted)}   delivered ${bar(received.length)}   ${(received.length / Math.max(secs, 0.001)).toFixed(1)}/s ` +
      `${refused ? ` refused ${refused}` : ''}  `,
  )
}
const timer = setInterval(draw, 100)
process.stderr.write(`Sending ${count} statements to the box on 127.0.0.1:${port}; the box delivers them to this demo receiver on 127.0.0.1:2526.\n`)

const sends = Array.from({ length: count }, (_, i) =>
  transport
    .sendMail({
      from: '"Bank Statements" <statements@bank.example>',
      to: `customer${i}@example.net`,
      subject: `2026年11月有價證券月對帳單 #${i}`,
      text: `親愛的客戶您好，這是您的電子帳單 #${i}。\n`,
      headers: { 'X-Statement-Class': 'monthly', 'X-Statement-ID': `${batch}-${String(i).padStart(6, '0')}`, 'X-Statement-Batch': batch },
    })
    .then(
      () => void submitted++,
      (err: Error) => {
        refused++
        if (refused === 1) process.stderr.write(`\ndemo: the box refused a statement: ${err.message}\n`)
      },
    ),
)
await Promise.all(sends)
transport.close()
const deadline = Date.now() + 120_000
while (received.length < submitted && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
clearInterval(timer)
draw()
const secs = (Date.now() - started) / 1000
await new Promise<void>((r) => receiver.close(() => r()))
process.stderr.write('\n\nChecking every delivered statement with independent tools (openssl, python3-dkim)…\n')

const failures: string[] = []
const caFile = values.ca ?? devCaFile(config.dataDir)
const smime = await verifySmime(caFile)
const dkim = await verifyDkim()
process.stderr.write(
  `\nDone: ${received.length} of ${count} delivered in ${secs.toFixed(1)} s; ` +
    `S/MIME verified ${smime}/${received.length} (openssl), DKIM verified ${dkim}/${received.length} (python3-dkim)\n`,
)
process.stderr.write(`What the box's ledger counted for this batch: npm run reports -- summary --batch ${batch}\n`)
for (const f of failures.slice(0, 20)) process.stderr.write(`  ${f}\n`)
if (failures.length > 20) process.stderr.write(`  … and ${failures.length - 20} more\n`)
process.exit(received.length === count && smime === count && dkim === count ? 0 : 1)

/** `openssl cms -verify` of each mail against the CA, four at a time; returns how many verified. */
async function verifySmime(ca: string): Promise<number> {
  if (!existsSync(ca)) {
    failures.push(`S/MIME not checked: no CA file ${ca} (give the issuing CA with --ca FILE)`)
    return 0
  }
  let ok = 0
  const queue = [...received]
  const worker = async () => {
    for (let r = queue.shift(); r; r = queue.shift()) {
      try {
        await run('openssl', ['cms', '-verify', '-CAfile', ca, '-in', r.file, '-out', '/dev/null'])
        ok++
      } catch (err) {
        failures.push(
          `${r.statementId}: S/MIME does not verify: ${
            String((err as { stderr?: string }).stderr ?? err)
              .trim()
              .split('\n')[0]
          }`,
        )
      }
    }
  }
  await Promise.all([worker(), worker(), worker(), worker()])
  return ok
}

/** python3-dkim (Debian's, independent of the box) against the records the box publishes. */
async function verifyDkim(): Promise<number> {
  const hsm = hsmFromConfig(config, systemClock)
  let records: Record<string, string>
  try {
    await hsm.open()
    records = Object.fromEntries((await dkimRecords(config, hsm)).map((r) => [r.name, r.value]))
  } finally {
    await hsm.close()
  }
  const byFile = new Map(received.map((r) => [r.file, r.statementId]))
  const output = await new Promise<string>((resolve, reject) => {
    const p = spawn('/usr/bin/python3', [join(import.meta.dirname, 'verify-dkim.py'), JSON.stringify(records)], { stdio: ['pipe', 'pipe', 'inherit'] })
    let text = ''
    p.stdout.setEncoding('utf8').on('data', (d: string) => (text += d))
    p.on('error', reject)
    p.on('close', () => resolve(text))
    p.stdin.end(received.map((r) => r.file).join('\n'))
  })
  let ok = 0
  for (const line of output.split('\n')) {
    const [verdict, file, ...reason] = line.split(' ')
    if (verdict === 'PASS') ok++
    else if (verdict === 'FAIL') failures.push(`${byFile.get(file!) ?? file}: DKIM does not verify: ${reason.join(' ')}`)
  }
  return ok
}
