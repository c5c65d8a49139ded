import { parseArgs } from 'node:util'
import { operatorLogin } from '../firmware/control/admin-record.ts'
import { controlRequests, controlSocketPath, type ControlRequest } from '../firmware/control/server.ts'
import { failer, idsAsPositionals, printHelp, toolConfig } from './cli.ts'

const USAGE = `usage: npm run queue -- <command> [--config FILE] [--json]

  summary                 mails in the queue, by state
  list [--state S] [--limit N]
                          queued mails (S: queued, inflight, deferred, held)
  show ID                 one mail: state, attempts, masked sender and recipients,
                          size, statement id (decrypted in the box, never printed whole)
  hold ID                 keep a mail from being delivered until released
  release ID              deliver a held mail again (due at once)
  retry ID                make a deferred mail due now (its destination is back)
  remove ID --reason TEXT take a held mail out of the queue for good; the firm gets a
                          notice naming you and the reason (hold it first)

Talks to the running box over its control socket (<dataDir>/control.sock, mode 0600:
run as the box's user or root). Every command is recorded in the audit trail with
your login name.
`

/**
 * The operator's queue tool (like Postfix's mailq and postsuper): it asks the
 * running box, which owns the spool; it never touches spool files itself.
 */
const QUEUE_OPTIONS = {
  config: { type: 'string' },
  state: { type: 'string' },
  limit: { type: 'string' },
  reason: { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean' },
} as const
const { values, positionals } = parseArgs({
  args: idsAsPositionals(process.argv.slice(2), QUEUE_OPTIONS),
  options: QUEUE_OPTIONS,
  allowPositionals: true,
})
if (values.help) printHelp(USAGE, values.config)

const fail: (message: string, code?: number) => never = failer('queue')

const config = toolConfig('queue', values.config)

const [command, id] = positionals
const who = operatorLogin()
let request: ControlRequest
switch (command) {
  case 'summary':
    request = { cmd: 'queue.summary', who }
    break
  case 'list':
    request = { cmd: 'queue.list', who, args: { ...(values.state ? { state: values.state } : {}), ...(values.limit ? { limit: Number(values.limit) } : {}) } }
    break
  case 'remove':
    if (!id || !values.reason) fail(`remove needs a queue id and --reason "…"\n\n${USAGE}`, 2)
    request = { cmd: 'queue.remove', who, args: { id, reason: values.reason } }
    break
  case 'show':
  case 'hold':
  case 'release':
  case 'retry':
    if (!id) fail(`${command} needs a queue id\n\n${USAGE}`, 2)
    request = { cmd: `queue.${command}`, who, args: { id } }
    break
  default:
    fail(command ? `unknown command "${command}"\n\n${USAGE}` : USAGE, 2)
}

let reply
try {
  ;[reply] = await controlRequests(controlSocketPath(config), [request])
} catch (err) {
  fail((err as Error).message)
}
if (!reply) fail('no reply from the box')
if (!reply.ok) fail(reply.error)
const result = reply.result

if (values.json) {
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
} else if (command === 'summary') {
  const s = result as Record<string, number>
  process.stdout.write(`${s.total} queued: ${s.queued} waiting, ${s.inflight} in flight, ${s.deferred} deferred, ${s.held} held\n`)
} else if (command === 'list') {
  const rows = result as { id: string; state: string; attempts: number; created: string; nextAttemptAt?: string }[]
  const lines = rows.map((r) => `${r.id.padEnd(16)} ${r.state.padEnd(9)} ${String(r.attempts).padStart(3)}  ${r.created}  ${r.nextAttemptAt ?? ''}`)
  process.stdout.write(`${'ID'.padEnd(16)} ${'STATE'.padEnd(9)} TRY  CREATED                   NEXT ATTEMPT\n${lines.join('\n')}${lines.length ? '\n' : ''}`)
} else {
  const r = result as Record<string, unknown>
  for (const [k, v] of Object.entries(r)) {
    if (v === undefined) continue
    const plain = (x: unknown) => (typeof x === 'string' ? x : JSON.stringify(x))
    const item = (x: unknown) => (x !== null && typeof x === 'object' ? Object.values(x).map(plain).join(' ') : plain(x))
    const text = Array.isArray(v) ? (v as unknown[]).map(item).join(', ') : plain(v)
    process.stdout.write(`${k.padEnd(15)} ${text}\n`)
  }
}
