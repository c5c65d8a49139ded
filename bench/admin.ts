/**
 * The admin page with a full queue (issue: Local admin page).
 *
 *   npm run bench:admin [-- --count 1000000 --requests 200]
 *
 * 1. `count` mails are put in a spool through Spool.accept (encrypted, data keys
 *    wrapped in the data directory's SoftHSM token, as the box does); the daemon
 *    that starts on it has delivery off, so all of them stay queued while it is
 *    measured.
 * 2. The real daemon starts on that data directory; the first administrator is
 *    made with the setup code and logs in with TOTP, over HTTPS.
 * 3. `requests` sequential requests each, over one kept-alive TLS connection with
 *    a real HTTP client (node:https): the dashboard, the first queue page and
 *    /metrics (with the bearer token). Baseline, same run and connection: a static
 *    file from the same server (TLS, fastify, the hooks every request passes).
 *
 * Targets: dashboard and queue p95 ≤ 100 ms, /metrics p95 ≤ 50 ms with 1M queued.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { Agent, request } from 'node:https'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { hotp, stepAt } from '../firmware/admin/totp.ts'
import { parseConfig } from '../firmware/config/load.ts'
import { hsmFromConfig } from '../firmware/keys/service.ts'
import { newQueueId } from '../firmware/spool/ids.ts'
import { Spool } from '../firmware/spool/spool.ts'
import { DAEMON_ENV, DAEMON_NODE_ARGS } from '../firmware/runtime.ts'
import { unbase32 } from '../hal/crypto/base32.ts'

const { values } = parseArgs({ options: { count: { type: 'string', default: '1000000' }, requests: { type: 'string', default: '200' } } })
const count = Number(values.count)
const requests = Number(values.requests)
const root = mkdtempSync(join(tmpdir(), 'sg-bench-admin-'))
const say = (s: string) => process.stderr.write(`${s}\n`)

// 1. The spool, filled and held.
const raw = { dataDir: root, spool: { verifyOnStart: false, maxMessages: count + 10, reservePercent: 1 }, admin: { listen: '127.0.0.1:0' } }
const config = parseConfig(raw)
const hsm = hsmFromConfig(config, { now: () => Date.now() })
await hsm.open()
const spool = new Spool({ config, log: pino({ level: 'silent' }), hsm, events: { emit() {} }, clock: { now: () => Date.now() } })
await spool.start()
const body = Buffer.alloc(4096, 'x')
const t0 = Date.now()
let next = 0
let done = 0
await Promise.all(
  Array.from({ length: 64 }, async () => {
    for (let i = next++; i < count; i = next++) {
      const id = newQueueId()
      await spool.accept({
        envelope: {
          id,
          mailFrom: 'statements@bank.example',
          rcptTo: [`c${i}@example.net`],
          account: 'firm',
          clientAddress: '127.0.0.1',
          tls: undefined,
          receivedAt: 0,
        },
        message: body,
      })
      if (++done % 50_000 === 0)
        say(`  queued ${done.toLocaleString('en')} of ${count.toLocaleString('en')} (${Math.round(done / ((Date.now() - t0) / 1000))}/s)`)
    }
  }),
)
await spool.stop()
await hsm.close()
say(`spool ready: ${count.toLocaleString('en')} queued mails in ${((Date.now() - t0) / 1000).toFixed(0)} s`)

// 2. The daemon on it.
const tokenFile = join(root, 'metrics-token')
writeFileSync(tokenFile, 'bench-token-0123456789\n', { mode: 0o600 })
const configPath = join(root, 'config.json')
writeFileSync(
  configPath,
  JSON.stringify({
    ...raw,
    submission: { starttlsPort: 0, implicitTlsPort: 0 },
    // Nothing is delivered while it is measured: every mail stays queued.
    delivery: { enabled: false },
    returnPath: { enabled: false },
    admin: { listen: '127.0.0.1:0', metrics: { tokenFile } },
  }),
)
const child = spawn(process.execPath, [...DAEMON_NODE_ARGS, join(import.meta.dirname, '../firmware/main.ts'), '--config', configPath], {
  stdio: ['ignore', 'pipe', 'inherit'],
  env: { ...process.env, ...DAEMON_ENV },
})
// The daemon goes with the benchmark, whatever happens to it.
process.on('exit', () => child.kill('SIGKILL'))
const started = Date.now()
const url = await new Promise<string>((resolve, reject) => {
  let pending = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    pending += d
    for (const line of pending.split('\n').slice(0, -1)) {
      const r = JSON.parse(line) as { msg?: string; url?: string }
      if (r.msg === 'admin page listening') resolve(r.url!)
    }
    pending = pending.slice(pending.lastIndexOf('\n') + 1)
  })
  child.once('exit', (code) => reject(new Error(`the daemon exited (${code})`)))
})
say(`daemon up in ${((Date.now() - started) / 1000).toFixed(1)} s at ${url}`)
const ca = readFileSync(join(root, 'tls', 'submission.crt'), 'utf8')
const agent = new Agent({ keepAlive: true, maxSockets: 1, ca })
const cookies = new Map<string, string>()
let csrf = ''

function send(
  method: string,
  path: string,
  form?: Record<string, string>,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; ms: number }> {
  const data = form ? new URLSearchParams({ ...form, _csrf: csrf }).toString() : undefined
  const cookie = [...cookies].map(([k, v]) => `${k}=${v}`).join('; ')
  const t = process.hrtime.bigint()
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, url),
      {
        method,
        agent,
        headers: {
          ...headers,
          ...(cookie ? { cookie } : {}),
          ...(data ? { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(data) } : {}),
        },
      },
      (res) => {
        let text = ''
        res.setEncoding('utf8').on('data', (d: string) => (text += d))
        res.on('end', () => {
          for (const c of res.headers['set-cookie'] ?? []) {
            const pair = c.split(';')[0]!
            cookies.set(pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1))
          }
          csrf = /name="_csrf" value="([^"]+)"/.exec(text)?.[1] ?? csrf
          resolve({ status: res.statusCode ?? 0, body: text, ms: Number(process.hrtime.bigint() - t) / 1e6 })
        })
      },
    )
    req.on('error', reject)
    req.end(data)
  })
}

await send('GET', '/setup')
const setupCode = readFileSync(join(root, 'admin', 'setup-code'), 'utf8').trim()
const password = 'Orchard-ladder 8 pears'
const made = await send('POST', '/setup', { code: setupCode, name: 'bench', password })
if (made.status !== 303) throw new Error(`setup refused: ${made.status} ${/class="notice[^>]*>([^<]*)/.exec(made.body)?.[1] ?? made.body.slice(0, 400)}`)
const enrol = await send('GET', '/enrol')
const secret = unbase32(/<code class="secret">([A-Z2-7 ]+)<\/code>/.exec(enrol.body)![1]!.replace(/ /g, '').toLowerCase())!
const step = stepAt(Date.now())
await send('POST', '/enrol', { code: hotp(secret, step) })
await send('GET', '/login')
if ((await send('POST', '/login', { name: 'bench', password, code: hotp(secret, step + 1) })).status !== 303) throw new Error('login refused')

// 3. The pages, measured.
async function measure(path: string, headers: Record<string, string> = {}): Promise<{ p50: number; p95: number; p99: number; status: number }> {
  const ms: number[] = []
  let status = 0
  for (let i = 0; i < 5; i++) await send('GET', path, undefined, headers) // warm-up
  for (let i = 0; i < requests; i++) {
    const r = await send('GET', path, undefined, headers)
    status = r.status
    ms.push(r.ms)
  }
  ms.sort((a, b) => a - b)
  const q = (p: number) => Number(ms[Math.min(ms.length - 1, Math.ceil((p / 100) * ms.length) - 1)]!.toFixed(2))
  return { p50: q(50), p95: q(95), p99: q(99), status }
}
const baseline = await measure('/static/app.css')
const dashboard = await measure('/dashboard')
const queue = await measure('/queue')
const metrics = await measure('/metrics', { authorization: 'Bearer bench-token-0123456789' })
const queueCount = /sg_queue_mails\{state="queued"\} (\d+)/.exec(
  (await send('GET', '/metrics', undefined, { authorization: 'Bearer bench-token-0123456789' })).body,
)?.[1]
child.kill('SIGTERM')
await new Promise((r) => child.once('exit', r))
agent.destroy()

const result = {
  date: new Date().toISOString(),
  machine: `${cpus().length} cores, ${cpus()[0]?.model.split(' ').slice(0, 2).join(' ')}`,
  node: process.version,
  queued: count,
  queuedAccordingToMetrics: Number(queueCount),
  requestsEach: requests,
  baselineStaticMs: baseline,
  dashboardMs: dashboard,
  queueFirstPageMs: queue,
  metricsMs: metrics,
  dashboardP95VsBaseline: Number((dashboard.p95 / baseline.p95).toFixed(1)),
  targets: { dashboardP95Ms: 100, queueP95Ms: 100, metricsP95Ms: 50 },
  met: dashboard.p95 <= 100 && queue.p95 <= 100 && metrics.p95 <= 50,
}
writeFileSync(join(import.meta.dirname, 'results', 'admin.json'), `${JSON.stringify(result, null, 2)}\n`)
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
rmSync(root, { recursive: true, force: true })
process.exit(result.met ? 0 : 1)
