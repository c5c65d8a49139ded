import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { writeFileAtomic } from '../hal/storage/files.ts'
import { parseConfig } from '../firmware/config/load.ts'
import { hashPassword } from '../firmware/submission/password.ts'

/**
 * First boot for a development box (`npm start` runs it): writes
 * `<dataDir>/config.json` with one submission account whose random password is
 * stored in `<dataDir>/secrets/` (0600) and nowhere else; the config holds only
 * its hash. All delivery goes to the loopback demo receiver (127.0.0.1:2526). There is no default password (S8). Idempotent: an existing config
 * is left alone.
 *
 *   node provisioning/first-boot.ts [--data-dir ./var]
 */
const args = process.argv.slice(2)
const i = args.indexOf('--data-dir')
const dataDirArg = i >= 0 && args[i + 1] ? args[i + 1]! : './var'
const dataDir = resolve(dataDirArg)
const configPath = join(dataDir, 'config.json')
const account = 'statements'
const secretPath = join(dataDir, 'secrets', `submission-${account}.password`)

if (existsSync(configPath)) {
  process.stderr.write(`first-boot: ${configPath} exists, leaving it as it is\n`)
} else {
  const password = randomBytes(18).toString('base64url')
  const config = {
    dataDir: dataDirArg,
    submission: { accounts: [{ name: account, passwordHash: await hashPassword(password), allowFrom: [] }] },
    // Development box: DKIM for the demo sender domain (key made in the HSM at start), and every
    // recipient domain routed to the loopback demo receiver (npm run demo), so nothing leaves the machine.
    signing: { domains: [{ domain: 'bank.example', smimeKey: '', dkimSelector: 'dev' }] },
    delivery: { routes: [{ domain: '*', host: '127.0.0.1', port: 2526, tls: 'opportunistic' }] },
  }
  parseConfig(config) // never write a config the box would refuse
  writeFileAtomic(secretPath, `${password}\n`, 0o600)
  writeFileAtomic(configPath, `${JSON.stringify(config, null, 2)}\n`, 0o600)
  process.stderr.write(
    `first-boot: wrote ${configPath} with submission account "${account}";\n` +
      `            its password is in ${secretPath} (mode 0600). Change it before real use.\n`,
  )
}
