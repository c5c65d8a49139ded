import { readFileSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { systemClock } from '../hal/clock.ts'
import {
  BackupError,
  collectBackup,
  openBackup,
  passphraseProblem,
  planRestore,
  sealBackup,
  writeRestoredFiles,
  type RestorePlan,
} from '../firmware/control/backup.ts'
import { readConfigFile } from '../firmware/config/load.ts'
import { Proposals } from '../firmware/config/proposals.ts'
import { ConfigTamperError, ConfigVersions, versionsDir } from '../firmware/config/versions.ts'
import { operatorLogin, recordAdminAction } from '../firmware/control/admin-record.ts'
import { boxRunning } from '../firmware/control/server.ts'
import { CONFIG_VERSION_LABEL } from '../firmware/keys/labels.ts'
import { failer, printHelp, toolConfig, toolConfigSource } from './cli.ts'
import { withToolHsm } from './tool-hsm.ts'

const USAGE = `usage: npm run config -- <command> [--config FILE]

  versions                 the configuration versions: who, who approved, when, why
  verify                   check every version's HMAC in the HSM (exit 78 naming a
                           version changed outside the box)
  backup [--out FILE] [--passphrase-file FILE]
                           an encrypted bundle for the second site (S12): versions,
                           the files they name, administrators (hashed), and what the
                           HSM must hold. Never a private key.
  restore FILE [--passphrase-file FILE] [--yes] [--ignore-keys]
                           on the standby (box stopped): check the bundle and this
                           box's HSM, show what would change; with --yes write the
                           files and administrators and propose the configuration,
                           for an administrator to approve on the admin page

The passphrase is read from the terminal without echo (twice for a backup), or
from --passphrase-file (mode 0600). It has at least 16 characters; keep it apart
from the bundle.
`

const fail: (message: string, code?: number) => never = failer('config')
const { values, positionals } = parseArgs({
  args: process.argv.slice(2),
  options: {
    config: { type: 'string' },
    out: { type: 'string' },
    'passphrase-file': { type: 'string' },
    yes: { type: 'boolean' },
    'ignore-keys': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
  allowPositionals: true,
})
if (values.help) printHelp(USAGE, values.config)
const [command, file] = positionals
const config = toolConfig('config', values.config)

/** A line from the terminal with nothing echoed. */
async function askSecret(prompt: string): Promise<string> {
  if (!process.stdin.isTTY) fail('no terminal to ask the passphrase on: use --passphrase-file', 2)
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true })
  const out = rl as unknown as { _writeToOutput: (s: string) => void }
  process.stderr.write(prompt)
  out._writeToOutput = () => undefined
  const answer = await new Promise<string>((r) => rl.question('', r))
  rl.close()
  process.stderr.write('\n')
  return answer
}

async function passphrase(twice: boolean): Promise<string> {
  const path = values['passphrase-file']
  if (path) return readFileSync(path, 'utf8').replace(/\r?\n$/, '')
  const first = await askSecret('backup passphrase: ')
  if (twice && (await askSecret('again: ')) !== first) fail('the two passphrases differ')
  return first
}

const versions = (hsmMac: (d: Buffer) => Promise<Buffer>) =>
  new ConfigVersions({ dataDir: config.dataDir, mac: hsmMac, clock: systemClock, events: { emit: () => undefined } })

function printPlan(plan: RestorePlan): void {
  const w = (s: string) => process.stdout.write(`${s}\n`)
  w('configuration (this site keeps its own addresses, ports, data directory, HSM and egress):')
  if (!plan.diff) w('  no change')
  else for (const k of Object.keys(plan.diff.after)) w(`  ${k}: ${JSON.stringify(plan.diff.before[k])} -> ${JSON.stringify(plan.diff.after[k])}`)
  w('files:')
  for (const f of plan.files) w(`  ${f.key}: ${f.state === 'restore' ? `restored to ${f.to}` : `${f.from} ${f.state}`}`)
  if (!plan.files.length) w('  none')
  w('secrets this box needs of its own (never in a backup):')
  for (const s of plan.secretsExpected) w(`  ${s.key}: ${s.path} ${s.present ? 'present' : 'MISSING'}`)
  if (!plan.secretsExpected.length) w('  none')
  w(`administrators: ${plan.adminUsers}`)
  w("HSM keys (moved only by the HSM vendor's backup; compared by key check value or public-key hash):")
  for (const k of plan.keys) w(`  ${k.label}: ${k.state}${k.state === 'missing' || k.state === 'different' ? ` — ${k.purpose}` : ''}`)
  for (const c of plan.certificates) w(`  certificate ${c.label}: ${c.state}`)
}

try {
  switch (command) {
    case 'versions': {
      await withToolHsm(config, fail, async (hsm) => {
        for (const v of await versions((d) => hsm.keys.hmac(CONFIG_VERSION_LABEL, d)).verifyAll())
          process.stdout.write(
            `${String(v.number).padStart(4)}  ${v.time}  schema ${v.schemaVersion}  ${v.source.padEnd(9)} by ${v.author}` +
              `${v.approver ? `, approved by ${v.approver}` : ''}: ${v.reason}\n`,
          )
      })
      break
    }
    case 'verify': {
      await withToolHsm(config, fail, async (hsm) => {
        const all = await versions((d) => hsm.keys.hmac(CONFIG_VERSION_LABEL, d)).verifyAll()
        process.stdout.write(`${all.length} configuration versions, every HMAC correct; version ${all.at(-1)?.number ?? '-'} in force\n`)
      })
      break
    }
    case 'backup': {
      const secret = await passphrase(true)
      const problem = passphraseProblem(secret)
      if (problem) fail(problem)
      const out = resolve(values.out ?? `sg-config-${hostname()}-${new Date().toISOString().slice(0, 10)}.sgbk`)
      await withToolHsm(config, fail, async (hsm) => {
        // Only checked versions go into a backup: a tampered one would be carried to the second site.
        await versions((d) => hsm.keys.hmac(CONFIG_VERSION_LABEL, d)).verifyAll()
        const payload = await collectBackup({ config, hsm, versionsDir: versionsDir(config.dataDir), hostname: hostname(), now: Date.now() })
        writeFileSync(out, sealBackup(payload, secret), { mode: 0o600 })
        await recordAdminAction(config, hsm, systemClock, {
          action: 'config.backup',
          target: `version ${payload.inForce}`,
          outcome: 'ok',
          detail: `${out}: ${payload.versions.length} versions, ${payload.files.length} files, ${payload.hsm.keys.length} HSM labels`,
        })
        process.stdout.write(
          `wrote ${out} (mode 0600): versions 1–${payload.inForce}, ${payload.files.length} files, ` +
            `${payload.adminUsers ? 'administrators' : 'no administrators'}, ${payload.hsm.keys.length} HSM labels to check on the standby\n`,
        )
      })
      break
    }
    case 'restore': {
      if (!file) fail('restore needs the bundle: npm run config -- restore FILE', 2)
      if (await boxRunning(config)) fail(`the box on ${config.dataDir} is running: stop it first (restore writes its administrators and files)`)
      const payload = openBackup(readFileSync(file), await passphrase(false))
      const local = readConfigFile(toolConfigSource(values.config).path)
      await withToolHsm(config, fail, async (hsm) => {
        const mac = (d: Buffer) => hsm.keys.hmac(CONFIG_VERSION_LABEL, d)
        const v = versions(mac)
        await v.verifyAll()
        const plan = await planRestore({ payload, local, dataDir: config.dataDir, hsm })
        process.stdout.write(`backup of ${payload.hostname}, ${payload.createdAt}: version ${payload.inForce} (schema ${payload.schemaVersion})\n`)
        printPlan(plan)
        if (plan.keyProblems.length && !values['ignore-keys'])
          fail(
            `${plan.keyProblems.length} HSM key(s) missing or different: restore them with the HSM vendor's backup (docs/operate.md: "Second site"), ` +
              'then run restore again; --ignore-keys goes on without them',
          )
        if (!values.yes) return void process.stdout.write('nothing changed; run again with --yes to propose this\n')
        // The standby's own file is its first version, as the box would import it at start: the proposal needs a base.
        if (!(await v.inForce()))
          await v.add({ config: local, author: 'restore', approver: '', reason: 'the configuration of this box before the restore', source: 'file' })
        writeRestoredFiles(plan, payload, config.dataDir)
        const proposals = new Proposals({
          dataDir: config.dataDir,
          versions: v,
          clock: systemClock,
          events: { emit: () => undefined },
          expiryHours: config.admin.proposalExpiryHours,
          allowSelfApproval: false,
        })
        const who = operatorLogin()
        const p = await proposals.propose(`restore:${who}`, plan.config, `restore of ${payload.hostname}'s version ${payload.inForce} (${payload.createdAt})`)
        await recordAdminAction(config, hsm, systemClock, {
          action: 'config.restore',
          target: `proposal ${p.id}`,
          outcome: 'ok',
          detail:
            `from ${payload.hostname} version ${payload.inForce}; administrators: ${plan.adminUsers}; ` +
            `files restored: ${plan.files.filter((f) => f.state === 'restore').length}`,
        })
        process.stdout.write(`proposal ${p.id}: start the box and approve it on the admin page (/config/proposals/${p.id})\n`)
      })
      break
    }
    default:
      process.stderr.write(USAGE)
      process.exit(2)
  }
} catch (err) {
  if (err instanceof ConfigTamperError) {
    process.stderr.write(`config: ${err.message}\n`)
    process.exit(78)
  }
  if (err instanceof BackupError) fail(err.message)
  throw err
}
