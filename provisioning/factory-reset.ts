import { createInterface } from 'node:readline/promises'
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { systemClock } from '../hal/clock.ts'
import { exportTrail } from '../firmware/audit/export.ts'
import { operatorLogin, recordAdminAction } from '../firmware/control/admin-record.ts'
import { factoryReset, wipeEmbeddedToken } from '../firmware/control/reset.ts'
import { boxRunning } from '../firmware/control/server.ts'
import { failer, printHelp, toolConfig, toolConfigSource } from './cli.ts'
import { withToolHsm } from './tool-hsm.ts'

const USAGE = `usage: npm run factory-reset -- [--config FILE] --certificate FILE [--export-audit DIR]
                             [--reason TEXT] [--confirm "ERASE <hostname>"]

Destroys every key in the HSM token, overwrites and removes the spool, the ledger, the
configuration versions, the administrators, TLS material and the secrets the configuration
names (and the configuration file itself), and writes a certificate of deletion signed in
the HSM (S13). The box must be stopped. First, with --export-audit, the audit trail is
exported for the records (the certificate goes into the export too). Asks you to type
ERASE and the host name, unless --confirm says it. Cannot be undone.
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
    help: { type: 'boolean', short: 'h' },
  },
})
if (values.help) printHelp(USAGE, values.config)
const config = toolConfig('factory-reset', values.config)
if (!values.certificate) fail('--certificate FILE is needed: where the certificate of deletion goes (outside the data directory)', 2)
const certificateFile = resolve(values.certificate)
if (await boxRunning(config)) fail(`the box on ${config.dataDir} is running: stop it first (systemctl stop statement-gateway)`)

const expected = `ERASE ${hostname()}`
let typed = values.confirm
if (typed === undefined) {
  if (!process.stdin.isTTY) fail(`no terminal to confirm on: pass --confirm "${expected}"`, 2)
  const rl = createInterface({ input: process.stdin, output: process.stderr })
  typed = await rl.question(`Everything on this box will be destroyed, keys included. Type "${expected}" to go on: `)
  rl.close()
}
if (typed.trim() !== expected) fail(`not confirmed (expected "${expected}"); nothing was changed`)

const operator = operatorLogin()
const reason = values.reason ?? 'factory reset'
const configFile = toolConfigSource(values.config).path
const signed = await withToolHsm(config, fail, async (hsm) => {
  await recordAdminAction(config, hsm, systemClock, { action: 'box.factory-reset', target: config.dataDir, outcome: 'ok', reason })
  const out = values['export-audit']
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
