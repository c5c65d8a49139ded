import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import nodemailer from 'nodemailer'
import { SMTPServer } from 'smtp-server'
import { makeSelfSignedServerCert } from '../hal/crypto/selfsigned.ts'

/**
 * Shows statements flowing through a running development box (npm start in
 * another terminal): starts the loopback receiver the dev config routes all
 * mail to (127.0.0.1:2526), submits a sample batch with a real SMTP client
 * (nodemailer), and draws progress until every statement has arrived.
 *
 *   npm run demo [-- --count 200 --concurrency 8]
 */
const { values } = parseArgs({ options: { count: { type: 'string', default: '100' }, concurrency: { type: 'string', default: '8' }, 'data-dir': { type: 'string', default: './var' } } })
const count = Number(values.count)
const dataDir = resolve(values['data-dir'])

let password: string
let config: { submission?: { starttlsPort?: number } }
try {
  password = readFileSync(join(dataDir, 'secrets', 'submission-statements.password'), 'utf8').trim()
  config = JSON.parse(readFileSync(join(dataDir, 'config.json'), 'utf8')) as typeof config
} catch {
  process.stderr.write(`demo: no development box in ${dataDir}; run "npm start" first (in another terminal)\n`)
  process.exit(1)
}

const received: { bytes: number; dkim: boolean; at: number }[] = []
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
      received.push({ bytes: data.length, dkim: data.subarray(0, 200).toString().startsWith('DKIM-Signature:'), at: Date.now() })
      cb()
    })
  },
})
receiver.on('error', () => {}) // a client that drops its connection is not the demo's problem
await new Promise<void>((r, reject) => {
  receiver.server.once('error', reject)
  receiver.listen(2526, '127.0.0.1', () => r())
})

const transport = nodemailer.createTransport({
  host: '127.0.0.1',
  port: config.submission?.starttlsPort ?? 2587,
  requireTLS: true,
  pool: true,
  maxConnections: Number(values.concurrency),
  auth: { user: 'statements', pass: password },
  tls: { ca: readFileSync(join(dataDir, 'tls', 'submission.crt')), servername: 'localhost' },
})

const started = Date.now()
let submitted = 0
let refused = 0
const bar = (n: number) => `${'█'.repeat(Math.round((n / count) * 30)).padEnd(30, '░')} ${String(n).padStart(String(count).length)}/${count}`
const draw = () => {
  const secs = (Date.now() - started) / 1000
  process.stderr.write(`\r  submitted ${bar(submitted)}   delivered ${bar(received.length)}   ${(received.length / Math.max(secs, 0.001)).toFixed(1)}/s ${refused ? ` refused ${refused}` : ''}  `)
}
const timer = setInterval(draw, 100)
process.stderr.write(`Sending ${count} statements to the box on 127.0.0.1:${config.submission?.starttlsPort ?? 2587}; the box delivers them to this demo receiver on 127.0.0.1:2526.\n`)

const sends = Array.from({ length: count }, (_, i) =>
  transport
    .sendMail({
      from: '"Bank Statements" <statements@bank.example>',
      to: `customer${i}@example.net`,
      subject: `2026年11月有價證券月對帳單 #${i}`,
      text: `親愛的客戶您好，這是您的電子帳單 #${i}。\n`,
      headers: { 'X-Statement-Class': 'monthly' },
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
process.stderr.write(
  `\n\nDone: ${received.length} of ${count} statements delivered in ${secs.toFixed(1)} s; ` +
    `${received.filter((r) => r.dkim).length} carried a DKIM signature made in the HSM.\n`,
)
await new Promise<void>((r) => receiver.close(() => r()))
process.exit(received.length === count ? 0 : 1)
