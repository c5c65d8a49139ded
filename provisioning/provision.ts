import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { createInterface } from 'node:readline/promises'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { systemClock } from '../hal/clock.ts'
import type { Hsm } from '../hal/hsm/index.ts'
import { writeFileAtomic } from '../hal/storage/files.ts'
import { parseConfig } from '../firmware/config/load.ts'
import { hsmFromConfig } from '../firmware/keys/service.ts'
import { AnswerError, completeAnswers, type Answers } from './answers.ts'
import { failer } from './cli.ts'
import * as step from './provision-steps.ts'

const USAGE = `usage: npm run provision -- [--answers FILE] [--root DIR]

Provisions the appliance, step by step with progress, asking at the terminal for
whatever the answers file leaves out: inventory, network (management and four egress
addresses), HSM, keys and DNS records, submission accounts, bandwidth, clock, the
configuration, the systemd service, the firewall, and last the admin page's one-time
setup code. Idempotent and resumable: run it again after a failure or to change an
answer; what is done already is checked and kept.

  --answers FILE  answers as JSON (see docs/install.md)
  --root DIR      write /etc files under DIR and make no user or service (a lab, tests)
`

const fail: (message: string, code?: number) => never = failer('provision')
const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { answers: { type: 'string' }, root: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
})
if (values.help) {
  process.stdout.write(USAGE)
  process.exit(0)
}
const root = resolve(values.root ?? '/')
const CONFIG_PATH = '/etc/statement-gateway/config.json'
const UNIT = new URL('./systemd/statement-gateway.service', import.meta.url).pathname

const tty = process.stdin.isTTY ? createInterface({ input: process.stdin, output: process.stderr }) : undefined
let answers: Answers
try {
  const given = values.answers ? (JSON.parse(readFileSync(values.answers, 'utf8')) as Record<string, unknown>) : {}
  answers = await completeAnswers(given, tty && ((q, d) => tty.question(`${q}${d ? ` [${d}]` : ''}: `)))
  const hsm = answers.hsm
  if (!hsm.embedded && !hsm.pin && !hsm.pinFile) {
    if (!tty) throw new AnswerError('hsm.pin or hsm.pinFile: the token user PIN (asked without echo at a terminal)')
    const out = tty as unknown as { _writeToOutput: (s: string) => void }
    process.stderr.write('HSM user PIN (not shown): ')
    out._writeToOutput = () => undefined
    hsm.pin = await tty.question('')
    process.stderr.write('\n')
  }
} catch (err) {
  if (err instanceof AnswerError || err instanceof SyntaxError) fail(`answers: ${err.message}`, 2)
  throw err
} finally {
  tty?.close()
}

const configFile = join(root, CONFIG_PATH)
const statePath = join(answers.dataDir, 'provision', 'state.json')
const state = existsSync(statePath) ? (JSON.parse(readFileSync(statePath, 'utf8')) as Record<string, { at: string; answers: string }>) : {}
const existing = existsSync(configFile) ? (JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>) : {}
const mgmt = answers.network.management.address.split('/')[0]!
const ctx: step.Context = {
  answers,
  root,
  configFile,
  raw: {
    ...existing,
    schemaVersion: 2,
    dataDir: answers.dataDir,
    submission: {
      ...(existing.submission as object),
      hostname: answers.hostname,
      host: mgmt,
      starttlsPort: 587,
      implicitTlsPort: 465,
      allowFrom: answers.submission.allowFrom,
    },
    delivery: {
      ...(existing.delivery as object),
      egress: answers.network.egress.addresses.map((a, i) => ({
        address: a.split('/')[0],
        ehloName: answers.network.egress.ehloNames?.[i] ?? answers.hostname,
        weight: 1,
        bitsPerSecond: 0,
      })),
      bandwidthBitsPerSecond: answers.delivery.bandwidthBitsPerSecond,
      tcDevices: answers.delivery.tcDevices,
      routes: answers.delivery.routes.map((r) => ({ tls: 'opportunistic', ...r })),
    },
    returnPath: { ...(existing.returnPath as object), listen: `${answers.network.egress.addresses[0]!.split('/')[0]}:25`, mxHost: answers.hostname },
    admin: { ...(existing.admin as object), listen: `${mgmt}:${answers.admin.port}`, allowFrom: answers.admin.allowFrom },
    reports: { ...(existing.reports as object), timeZone: answers.timeZone },
  },
  say: (l) => process.stdout.write(`      ${l}\n`),
  warn: (l) => process.stdout.write(`      WARNING: ${l}\n`),
}

let hsm: Hsm | undefined
const steps: [string, () => Promise<void>][] = [
  ['network', () => step.network(ctx)],
  [
    'HSM',
    async () => {
      ctx.raw.hsm = step.hsmSection(ctx)
      hsm = hsmFromConfig(parseConfig(ctx.raw), systemClock)
      await hsm.open()
      ctx.hsm = hsm
      await step.hsmCheck(ctx, hsm)
    },
  ],
  ['inventory', () => step.inventory(ctx)],
  ['keys and DNS records', () => step.keys(ctx, hsm!)],
  [
    'submission accounts',
    () => step.accounts(ctx, (existing.submission as { accounts?: { name: string; passwordHash: string }[] } | undefined)?.accounts ?? []),
  ],
  ['clock', () => step.clock(ctx)],
  [
    'configuration',
    () => {
      parseConfig(ctx.raw) // never a configuration the box would refuse
      writeFileAtomic(configFile, `${JSON.stringify(ctx.raw, null, 2)}\n`, 0o640)
      ctx.say(`${configFile}: the box imports it as a configuration version at its next start`)
      return Promise.resolve()
    },
  ],
  ['service', () => step.service(ctx, UNIT)],
  ['firewall', () => step.firewall(ctx)],
]

const digest = createHash('sha256').update(JSON.stringify(answers)).digest('hex').slice(0, 16)
try {
  for (const [i, [name, fn]] of steps.entries()) {
    const again = state[name]?.answers === digest
    process.stdout.write(`[${i + 1}/${steps.length + 1}] ${name}${again ? ' (done before with these answers; checking)' : ''}\n`)
    await fn()
    state[name] = { at: new Date().toISOString(), answers: digest }
    writeFileAtomic(statePath, `${JSON.stringify(state, null, 1)}\n`, 0o600)
  }
  process.stdout.write(`[${steps.length + 1}/${steps.length + 1}] first administrator\n`)
  const code = step.setupCode(ctx, hsm!)
  process.stdout.write(
    code
      ? `\nProvisioned. Start the box (systemctl start statement-gateway), open https://${answers.hostname}:${answers.admin.port}/ from ` +
          `${answers.admin.allowFrom.join(' or ')} and enter the one-time setup code\n\n    ${code}\n\n(valid 24 hours, once; also in ` +
          `${join(answers.dataDir, 'admin', 'setup-code')}).\n`
      : '\nProvisioned. An administrator exists already: log in on the admin page.\n',
  )
} catch (err) {
  process.stdout.write(`\nstopped: ${(err as Error).message}\nFix it and run provision again: what is done is kept.\n`)
  process.exitCode = 1
} finally {
  await hsm?.close()
}
