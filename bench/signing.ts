/**
 * Statements per second through the signing stage (S/MIME + DKIM, both keys
 * in a SoftHSM2 token), with the event loop's worst stall (issue: Signing).
 *
 *   npm run bench:signing [-- --count 2000 --concurrency 4 --rounds 3]
 *
 * Baseline in the same run: the token's own RSA-2048 signature rate at the
 * same concurrency, halved (two signatures per statement) — the ceiling the
 * stage can approach. Rounds alternate baseline and stage; medians reported.
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { parseConfig } from '../firmware/config/load.ts'
import { SigningStage } from '../firmware/pipeline/stages/signing.ts'
import { firmToken } from './firm-token.ts'

const { values } = parseArgs({
  options: { count: { type: 'string', default: '2000' }, concurrency: { type: 'string', default: '4' }, rounds: { type: 'string', default: '3' } },
})
const count = Number(values.count)
const concurrency = Number(values.concurrency)
const rounds = Number(values.rounds)

const dir = mkdtempSync(join(tmpdir(), 'sg-bench-sign-'))
// The firm's S/MIME key made in the token, certified by a throwaway CA.
const hsm = await firmToken(dir, concurrency)

const config = parseConfig({ dataDir: dir, signing: { domains: [{ domain: 'bank.example', smimeKey: 'smime/bank', dkimSelector: 'sg1' }] } })
const stage = new SigningStage({ config, log: pino({ level: 'silent' }), hsm, clock: { now: () => Date.now() }, events: { emit: () => {} } })
await stage.start()

/** Base64 in 76-character lines (RFC 2045). */
function base64Lines(b: Buffer): string {
  return b.toString('base64').replace(/.{76}/g, '$&\r\n')
}

// A ~60 KB statement: text part and a base64 PDF attachment (40 KB of PDF).
const pdf = Buffer.concat([Buffer.from('%PDF-1.7\n'), randomBytes(40_000), Buffer.from('\n%%EOF\n')])
const statement = Buffer.from(
  'From: "Bank Statements" <statements@bank.example>\r\nTo: customer@example.net\r\nSubject: =?UTF-8?B?5pyJ5YO56K2J5Yi45pyI5bCN5biz5Zau?=\r\n' +
    'Date: Sun, 22 Nov 2026 10:00:00 +0800\r\nMessage-ID: <bench@bank.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' +
    '--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n' +
    `${base64Lines(Buffer.from('您好，附件為本月對帳單。\r\n'.repeat(100)))}\r\n` +
    '--b\r\nContent-Type: application/pdf; name="statement.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n' +
    `${base64Lines(pdf)}\r\n--b--\r\n`,
)
const envelope = {
  id: 'b',
  mailFrom: 'statements@bank.example',
  rcptTo: ['customer@example.net'],
  account: 'a',
  clientAddress: '127.0.0.1',
  tls: undefined,
  receivedAt: 0,
}

async function pool(n: number, fn: () => Promise<unknown>): Promise<number> {
  let next = 0
  const start = process.hrtime.bigint()
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < n) await fn()
    }),
  )
  return n / (Number(process.hrtime.bigint() - start) / 1e9)
}

const histogram = monitorEventLoopDelay({ resolution: 1 })
const base: number[] = []
const stmt: number[] = []
const stalls: number[] = []
for (let r = 0; r < rounds; r++) {
  base.push((await pool(count, () => hsm.keys.sign('smime/bank', 'rsa-pkcs1-sha256', Buffer.alloc(200)))) / 2)
  histogram.reset()
  histogram.enable()
  stmt.push(await pool(count, () => stage.process({ envelope, message: statement })))
  histogram.disable()
  stalls.push(histogram.max / 1e6)
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const summary = {
  date: new Date().toISOString(),
  machine: `${cpus().length} cores, ${cpus()[0]?.model}`,
  node: process.version,
  statementBytes: statement.length,
  count,
  concurrency,
  rounds,
  statementsPerSecond: Math.round(median(stmt)),
  ceilingStatementsPerSecond: Math.round(median(base)),
  ratioToCeiling: Number((median(stmt) / median(base)).toFixed(2)),
  worstEventLoopStallMs: Number(Math.max(...stalls).toFixed(1)),
  targets: { statementsPerSecond: 600, worstEventLoopStallMs: 20 },
}
process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`)
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true })
writeFileSync(join(import.meta.dirname, 'results', 'signing.json'), `${JSON.stringify(summary, null, 2)}\n`)
await hsm.close()
rmSync(dir, { recursive: true, force: true })
