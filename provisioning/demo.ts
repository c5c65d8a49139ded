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
import { localTimeFormatter } from '../firmware/ledger/export.ts'
import { dkimRecords } from '../firmware/signing/dns.ts'
import { failer, printHelp, toolConfig, toolConfigSource } from './cli.ts'

const USAGE = `usage: npm run demo [-- --count 200 --concurrency 8 --ca FILE --bounce 5% --read-receipts 10%]

Shows statements flowing through a running development box (npm start in another
terminal): starts the loopback receiver the development config routes all mail to
(127.0.0.1:2526), submits a batch with a real SMTP client (nodemailer), draws
progress until every statement has arrived, then checks every delivered mail with
tools independent of the box: the S/MIME signature with openssl cms -verify against
the development CA (--ca: another CA file), the DKIM signature with python3-dkim
against the records npm run dkim -- dns prints. A mail that fails either check is
named, and the demo exits 1.

The return path (M8, M11): --bounce P% has the receiver accept P% of the statements
and then bounce them the way a real MX does later, with an RFC 3464 DSN to the
statement's VERP sender at the box's return-path listener. --read-receipts P% sends
P% as class monthly-high-value, whose read receipt the box asks for: the receiver
answers half of them with an MDN "displayed", and never reads the others, which
the box sends a second time and then puts on the paper-owed list. The demo waits
for that (minutes, on the development box's waits), then prints the month's list.
`
const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '100' },
    concurrency: { type: 'string', default: '8' },
    config: { type: 'string' },
    ca: { type: 'string' },
    bounce: { type: 'string', default: '0%' },
    'read-receipts': { type: 'string', default: '0%' },
    help: { type: 'boolean' },
  },
})
if (values.help) printHelp(USAGE, values.config)
const fail = failer('demo')
const count = Number(values.count)
if (!Number.isInteger(count) || count < 1) fail('--count must be a positive whole number', 2)
const config = toolConfig('demo', values.config)
const percent = (v: string, name: string) => {
  const p = Number(v.replace(/%$/, ''))
  if (!Number.isFinite(p) || p < 0 || p > 100) fail(`--${name} must be a percentage (e.g. 5%)`, 2)
  return p
}
const bouncePercent = percent(values.bounce, 'bounce')
const receiptPercent = percent(values['read-receipts'], 'read-receipts')
/** Spread over the batch: every k-th statement, for a share of p %. */
const every = (p: number) => (p > 0 ? Math.max(1, Math.round(100 / p)) : 0)
const bounceEvery = every(bouncePercent)
const receiptEvery = every(receiptPercent)
const HIGH_VALUE = 'monthly-high-value'
const receiptRule = config.returnPath.readReceipts.find((r) => r.statementClass === HIGH_VALUE)
if ((bouncePercent || receiptPercent) && config.returnPath.domains.length === 0) fail('--bounce and --read-receipts need returnPath.domains in the config', 2)
if (receiptPercent && !receiptRule) fail(`--read-receipts needs returnPath.readReceipts for the class ${HIGH_VALUE}`, 2)
const run = promisify(execFile)

const passwordFile = join(config.dataDir, 'secrets', 'submission-statements.password')
if (!existsSync(passwordFile)) fail(`no development box in ${config.dataDir}; run "npm start" first (in another terminal)`)
const password = readFileSync(passwordFile, 'utf8').trim()

const out = mkdtempSync(join(tmpdir(), 'sg-demo-'))
process.on('exit', () => rmSync(out, { recursive: true, force: true }))
const received: { file: string; statementId: string; at: number }[] = []
let resent = 0
const answered = { bounce: 0, read: 0 }
const [returnHost, returnPort] = [
  config.returnPath.listen.slice(0, config.returnPath.listen.lastIndexOf(':')),
  Number(config.returnPath.listen.split(':').pop()),
]
const returns = nodemailer.createTransport({ host: returnHost, port: returnPort, secure: false, ignoreTLS: true, pool: true, maxConnections: 2 })

/** Sends a report to the box's return-path listener, as the customer's mail system would: later, to the address the statement gave. */
async function answer(to: string, raw: string, what: 'bounce' | 'read'): Promise<void> {
  await new Promise((r) => setTimeout(r, 200))
  try {
    await returns.sendMail({ envelope: { from: what === 'bounce' ? '' : 'customer@example.net', to: [to] }, raw })
    answered[what]++
  } catch (err) {
    process.stderr.write(`\ndemo: the return-path listener refused a ${what === 'bounce' ? 'bounce' : 'read receipt'}: ${(err as Error).message}\n`)
  }
}

/** An RFC 3464 DSN like Postfix's: the mailbox turned out not to exist after the 250. */
const dsnFor = (to: string, rcpt: string) =>
  `From: MAILER-DAEMON@demo-mx.localhost (Mail Delivery System)\r\nTo: ${to}\r\nSubject: Undelivered Mail Returned to Sender\r\n` +
  `Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n` +
  `--R\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered to <${rcpt}>.\r\n` +
  `--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; demo-mx.localhost\r\n\r\nFinal-Recipient: rfc822; ${rcpt}\r\n` +
  `Action: failed\r\nStatus: 5.1.1\r\n` +
  `Diagnostic-Code: smtp; 550 5.1.1 <${rcpt}>: Recipient address rejected: User unknown in local recipient table\r\n\r\n--R--\r\n`

/** An RFC 8098 MDN as Outlook sends one when the customer opens the statement and agrees to send a receipt. */
const mdnFor = (to: string, rcpt: string) =>
  `From: ${rcpt}\r\nTo: ${to}\r\nSubject: Read: statement\r\nMIME-Version: 1.0\r\n` +
  `Content-Type: multipart/report; report-type=disposition-notification; boundary="M"\r\n\r\n` +
  `--M\r\nContent-Type: text/plain\r\n\r\nYour message was read.\r\n` +
  `--M\r\nContent-Type: message/disposition-notification\r\n\r\nReporting-UA: Microsoft Outlook 16.0\r\nFinal-Recipient: rfc822;${rcpt}\r\n` +
  `Disposition: manual-action/MDN-sent-manually; displayed\r\n\r\n--M--\r\n`
const { certPem, keyPem } = makeSelfSignedServerCert({ hostname: 'demo-mx.localhost' })
const receiver = new SMTPServer({
  cert: certPem,
  key: keyPem,
  disabledCommands: ['AUTH'],
  disableReverseLookup: true,
  logger: false,
  onData(stream, session, cb) {
    const chunks: Buffer[] = []
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('end', () => {
      const data = Buffer.concat(chunks)
      const header = readHeader(data)
      const statementId = field(header, 'x-statement-id') ?? '(no X-Statement-ID)'
      const n = Number(/-(\d+)$/.exec(statementId)?.[1] ?? -1)
      const again = received.some((r) => r.statementId === statementId)
      const rcpt = session.envelope.rcptTo[0]?.address ?? ''
      const verp = session.envelope.mailFrom ? session.envelope.mailFrom.address : ''
      cb()
      // A statement sent again (M11's second send) is the customer's mail, not a new one.
      if (again) return void resent++
      const file = join(out, `${received.length}.eml`)
      writeFileSync(file, data)
      received.push({ file, statementId, at: Date.now() })
      if (bounceEvery && n % bounceEvery === 0) void answer(verp, dsnFor(verp, rcpt), 'bounce')
      const dnt = field(header, 'disposition-notification-to')
      // Half the high-value statements are read (an MDN "displayed"), half never.
      if (dnt && n % (2 * receiptEvery) === 1) void answer(/<([^>]+)>/.exec(dnt)?.[1] ?? dnt, mdnFor(dnt, rcpt), 'read')
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
      headers: {
        'X-Statement-Class': receiptEvery && i % receiptEvery === 1 % receiptEvery ? HIGH_VALUE : 'monthly',
        'X-Statement-ID': `${batch}-${String(i).padStart(6, '0')}`,
        'X-Statement-Batch': batch,
      },
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
const highValue = receiptEvery ? Array.from({ length: count }, (_, i) => i).filter((i) => i % receiptEvery === 1 % receiptEvery).length : 0
const unread =
  highValue -
  (receiptEvery ? Array.from({ length: count }, (_, i) => i).filter((i) => i % receiptEvery === 1 % receiptEvery && i % (2 * receiptEvery) === 1).length : 0)
if (unread && receiptRule) {
  // M11 in minutes: the unread ones are sent again after the first wait, and owe paper after the second.
  const waitMs = (receiptRule.firstSendWaitMinutes + receiptRule.secondSendWaitMinutes) * 60_000 + 20_000
  const until = Date.now() + waitMs
  process.stderr.write(
    `\n\n${highValue} statements of class ${HIGH_VALUE} asked for a read receipt; ${highValue - unread} were read, ${unread} never will be.\n` +
      `Waiting for the box to send those again and then owe paper (${Math.round(waitMs / 1000)} s on this box's waits)…\n`,
  )
  while (Date.now() < until) {
    process.stderr.write(`\r  ${Math.ceil((until - Date.now()) / 1000)} s left; sent again so far: ${resent}   `)
    await new Promise((r) => setTimeout(r, 1000))
  }
}
returns.close()
await new Promise<void>((r) => receiver.close(() => r()))
process.stderr.write('\n\nChecking every delivered statement with independent tools (openssl, python3-dkim)…\n')

const failures: string[] = []
const caFile = values.ca ?? devCaFile(config.dataDir)
const smime = await verifySmime(caFile)
const dkim = await verifyDkim()
// #34: the result and the paper list on stdout (`npm run demo > out.txt` keeps them); progress stays on stderr.
process.stdout.write(
  `Done: ${received.length} of ${count} delivered in ${secs.toFixed(1)} s; ` +
    `S/MIME verified ${smime}/${received.length} (openssl), DKIM verified ${dkim}/${received.length} (python3-dkim)\n`,
)
process.stdout.write(`What the box's ledger counted for this batch: npm run reports -- summary --batch ${batch}\n`)
if (bounceEvery || receiptEvery) {
  const month = localTimeFormatter(config.reports.timeZone)(Date.now()).slice(0, 7)
  process.stdout.write(
    `Return path: ${answered.bounce} bounced after their 250 (DSNs to the box), ${answered.read} read receipts sent, ` +
      `${resent} statements sent a second time.\n` +
      `The paper-owed list: npm run reports -- paper --month ${month}\n\n`,
  )
  try {
    const source = toolConfigSource(values.config).path
    const args = [join(import.meta.dirname, 'reports.ts'), 'paper', '--month', month, ...(source ? ['--config', source] : [])]
    const { stdout } = await run(process.execPath, args)
    process.stdout.write(stdout.split('\n').slice(0, 25).join('\n') + '\n')
  } catch (err) {
    process.stderr.write(`demo: could not read the paper-owed list: ${(err as { stderr?: string }).stderr ?? (err as Error).message}\n`)
  }
}
for (const f of failures.slice(0, 20)) process.stdout.write(`  ${f}\n`)
if (failures.length > 20) process.stdout.write(`  … and ${failures.length - 20} more\n`)
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
