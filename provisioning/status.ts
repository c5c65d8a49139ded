import { parseArgs } from 'node:util'
import { operatorLogin } from '../firmware/control/admin-record.ts'
import { controlRequests, controlSocketPath } from '../firmware/control/server.ts'
import type { HsmStatus } from '../hal/hsm/index.ts'
import { failer, printHelp, toolConfig } from './cli.ts'

/**
 * What an operator checks first: is the box up, how full is the queue, what
 * has delivery done, which policy rules hit, is the HSM there and when do the
 * signing certificates expire. Asks the running box over its control socket.
 *
 *   npm run status [-- --json] [--config FILE]
 */
const USAGE = `usage: npm run status [-- --json]

What an operator checks first, asked of the running box over its control socket:
queue by state, deliveries since start, resting source addresses, policy rule counters,
the HSM token and missing keys, and each signing certificate's expiry.
`
const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { config: { type: 'string' }, json: { type: 'boolean', default: false }, help: { type: 'boolean' } },
})
if (values.help) printHelp(USAGE, values.config)

const fail: (message: string, code?: number) => never = failer('status')

const config = toolConfig('status', values.config)

interface Status {
  pid: number
  node: string
  startedAt: string
  spool: Record<string, number>
  delivery: Record<string, number> & { paused: { address: string; destination: string; until: string }[] }
  policy: Record<string, { refused: number; monitored: number }>
  hsm: HsmStatus
  memory?: { rss: number; submission: { used: number; limit: number; peak: number } }
  submission?: { refusedBusyAddress: number; authTimeouts: number; clientErrors: Record<string, number>; auditBacklog: number }
  returnPath?: { clientErrors: Record<string, number>; memory: { used: number; peak: number; limit: number; evictions: number } }
  admin?: { clientErrors: Record<string, number> }
  tracking?: { clientErrors: Record<string, number> }
  eventLoop?: { maxMs: number; p99Ms: number }
}

let status: Status
try {
  const [reply] = await controlRequests(controlSocketPath(config), [{ cmd: 'box.status', who: operatorLogin() }])
  if (!reply?.ok) fail(reply ? (reply as { error: string }).error : 'no reply')
  status = reply.result as Status
} catch (err) {
  fail((err as Error).message)
}

if (values.json) {
  process.stdout.write(`${JSON.stringify(status, null, 2)}\n`)
  process.exit(0)
}
const s = status.spool
const d = status.delivery
type Summary = { samples: number; p50: number; p99: number; max: number }
const lag = (d as unknown as { journalLagMs?: Summary }).journalLagMs
const writes = (d as unknown as { journalWriteMs?: Summary }).journalWriteMs
const mb = (n: number) => Math.round(n / 2 ** 20)
const lines = [
  `running since ${status.startedAt} (pid ${status.pid}, Node ${status.node})`,
  `queue     ${s.total} queued: ${s.queued} waiting, ${s.inflight} in flight, ${s.deferred} deferred, ${s.held} held`,
  `delivery  since start: ${d.delivered} delivered, ${d.deferred} deferred, ${d.bounced} bounced, ${d.expired} expired; ${d.inFlight} in progress`,
  ...(lag && lag.samples ? [`          250 to journal: p50 ${lag.p50} ms, p99 ${lag.p99} ms, max ${lag.max} ms (${lag.samples} mails)`] : []),
  ...(writes && writes.samples ? [`          journal writes (stamp to durable): p50 ${writes.p50} ms, p99 ${writes.p99} ms, max ${writes.max} ms`] : []),
  ...(status.eventLoop ? [`          event loop held up at most ${status.eventLoop.maxMs} ms since start (p99 ${status.eventLoop.p99Ms} ms)`] : []),
  ...d.paused.map((p) => `          ${p.address} rests at ${p.destination} until ${p.until}`),
  ...(status.memory
    ? [
        `memory    ${mb(status.memory.rss)} MB resident; mail in flight ${mb(status.memory.submission.used)} of ${mb(status.memory.submission.limit)} ` +
          `MB (peak ${mb(status.memory.submission.peak)})`,
      ]
    : []),
  ...(status.submission
    ? [
        `clients   ${status.submission.refusedBusyAddress} refused (too many from one address), ${status.submission.authTimeouts} not authenticated in ` +
          `time, errors ${JSON.stringify(status.submission.clientErrors)}; audit backlog ${status.submission.auditBacklog}`,
      ]
    : []),
  ...(status.returnPath
    ? [
        `          return path: errors ${JSON.stringify(status.returnPath.clientErrors)}; reports in memory ${mb(status.returnPath.memory.used)} of ` +
          `${mb(status.returnPath.memory.limit)} MB shared (peak ${mb(status.returnPath.memory.peak)}), ${status.returnPath.memory.evictions} cut off for room`,
      ]
    : []),
  ...(status.admin ? [`          admin page: errors ${JSON.stringify(status.admin.clientErrors)}`] : []),
  ...(status.tracking ? [`          tracking: errors ${JSON.stringify(status.tracking.clientErrors)}`] : []),
  `policy    ${
    Object.keys(status.policy).length
      ? Object.entries(status.policy)
          .map(([rule, c]) => `${rule}: ${c.refused} refused, ${c.monitored} monitored`)
          .join('; ')
      : 'no rule has hit since start'
  }`,
  `hsm       ` +
    `${status.hsm.error ? `NOT READY: ${status.hsm.error}` : `${status.hsm.token?.label} (${status.hsm.token?.manufacturer} ${status.hsm.token?.model})`}`,
  ...status.hsm.keys.filter((k) => !k.present).map((k) => `          missing key ${k.label} (${k.purpose})`),
  ...status.hsm.certificates.map(
    (c) => `          ${c.label}: ${c.subject.replace(/\n/g, ', ')}, expires ${c.notAfter} (${c.daysLeft < 0 ? 'EXPIRED' : `${c.daysLeft} days left`})`,
  ),
]
process.stdout.write(`${lines.join('\n')}\n`)
