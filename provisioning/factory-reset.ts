import { existsSync, readFileSync } from 'node:fs'
import { createInterface } from 'node:readline/promises'
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { systemClock } from '../hal/clock.ts'
import { exportTrail } from '../firmware/audit/export.ts'
import { operatorLogin, recordAdminAction } from '../firmware/control/admin-record.ts'
import { APPROVED_RESET, factoryReset, wipeEmbeddedToken, type ApprovedReset } from '../firmware/control/reset.ts'
import { boxRunning } from '../firmware/control/server.ts'
import { failer, printHelp, toolConfig, toolConfigSource } from './cli.ts'
import { withToolHsm } from './tool-hsm.ts'

const USAGE = `usage: npm run factory-reset -- [--config FILE] --certificate FILE [--export-audit DIR]
                             [--reason TEXT] [--confirm "ERASE <hostname>"]
       factory-reset.ts --pending [--config FILE]   (the unit's ExecStartPre)

Destroys every key in the HSM token, overwrites and removes the spool, the ledger, the
configuration versions, the administrators, TLS material and the secrets the configuration
names (and the configuration file itself), and writes a certificate of deletion signed in
the HSM (S13). The box must be stopped. First, with --export-audit, the audit trail is
exported for the records (the certificate goes into the export too). Asks you to type
ERASE and the host name, unless --confirm says it. Cannot be undone.

--pending carries out a reset two administrators approved on the admin page, if there is
one (else it does nothing): the service manager runs it as root before each start. The
certificate and the final export stay in the emptied data directory.
`

const fail: (message: string, code?: number) => never = failer('factory-reset')
const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    config: { type: 'string' },
    certificate: { type: 'string' },
    'export-audit': { type: 'string' },
    reason: { type: 'string' },
    confirm: { type: 'string' },
    pending: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
})
if (values.help) printHelp(USAGE, values.config)
const configFile = toolConfigSource(values.config).path
if (values.pending && configFile && !existsSync(configFile)) process.exit(0) // reset already: nothing to start from
const config = toolConfig('factory-reset', values.config)
let approved: ApprovedReset | undefined
if (values.pending) {
  const file = join(config.dataDir, APPROVED_RESET)
  if (!existsSync(file)) process.exit(0)
  approved = JSON.parse(readFileSync(file, 'utf8')) as ApprovedReset
  if (!approved.requestedBy || !approved.approvedBy || approved.requestedBy === approved.approvedBy)
    fail(`${file} is not a reset two administrators approved; remove it`)
}
const certificateFile = approved
  ? join(config.dataDir, 'deletion-certificate.json')
  : resolve(values.certificate ?? fail('--certificate FILE is needed: where the certificate of deletion goes', 2))
if (await boxRunning(config)) fail(`the box on ${config.dataDir} is running: stop it first (systemctl stop statement-gateway)`)

const expected = `ERASE ${hostname()}`
let typed = approved ? expected : values.confirm
if (typed === undefined) {
  if (!process.stdin.isTTY) fail(`no terminal to confirm on: pass --confirm "${expected}"`, 2)
  const rl = createInterface({ input: process.stdin, output: process.stderr })
  typed = await rl.question(`Everything on this box will be destroyed, keys included. Type "${expected}" to go on: `)
  rl.close()
}
if (typed.trim() !== expected) fail(`not confirmed (expected "${expected}"); nothing was changed`)

const operator = approved ? `${approved.requestedBy}, approved by ${approved.approvedBy} (admin page)` : operatorLogin()
const reason = approved?.reason ?? values.reason ?? 'factory reset'
const exportTo = approved ? join(config.dataDir, 'final-audit') : values['export-audit']
const signed = await withToolHsm(config, fail, async (hsm) => {
  await recordAdminAction(config, hsm, systemClock, { action: 'box.factory-reset', target: config.dataDir, outcome: 'ok', reason })
  const out = exportTo
  return factoryReset({
    config,
    hsm,
    operator,
    reason,
    hostname: hostname(),
    now: () => Date.now(),
    ...(configFile ? { configFile: resolve(configFile) } : {}),
    ...(out
      ? {
          exportAudit: async () => {
            const dir = resolve(out)
            await exportTrail(join(config.dataDir, 'audit'), dir)
            return dir
          },
        }
      : {}),
    certificateFile,
    keep: approved ? [certificateFile, join(config.dataDir, 'final-audit')] : [],
    progress: (s) => process.stderr.write(`factory-reset: ${s}…\n`),
  })
})
const token = wipeEmbeddedToken(config)
const c = signed.certificate
process.stdout.write(
  `Factory reset done. ${c.hsm.objectsBefore} HSM objects destroyed (the token holds none now); ` +
    `${Object.values(c.files).reduce((a, f) => a + f.files, 0) + token.files} files overwritten and removed.\n` +
    `Certificate of deletion: ${certificateFile}\n  SHA-256 ${signed.sha256} (write it on the paper record)\n` +
    (c.auditExport ? `Final audit export: ${c.auditExport.dir} (with the certificate; check it with sh ${join(c.auditExport.dir, 'verify.sh')})\n` : '') +
    'The box starts as on its first day: provision it again, or take it out of service.\n',
)
