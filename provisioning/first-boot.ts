import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { systemClock } from '../hal/clock.ts'
import { writeFileAtomic } from '../hal/storage/files.ts'
import { parseConfig } from '../firmware/config/load.ts'
import { ensureDevSmime } from '../firmware/keys/dev-smime.ts'
import { DEV_SMIME_LABEL } from '../firmware/keys/labels.ts'
import { hsmFromConfig } from '../firmware/keys/service.ts'
import { hashPassword } from '../hal/crypto/password.ts'

/**
 * First boot for a development box (`npm start` runs it): writes
 * `<dataDir>/config.json` with one submission account whose random password is
 * stored in `<dataDir>/secrets/` (0600) and nowhere else; the config holds only
 * its hash. There is no default password (S8). The sender domain bank.example
 * gets both signatures from the first mail on (M4, M5): DKIM with a key the box
 * makes in the HSM at start, and S/MIME with a key made in the HSM now and a
 * certificate from a development CA (`<dataDir>/signing/dev-ca.pem`; see
 * firmware/keys/dev-smime.ts). All delivery goes to the loopback demo receiver
 * (127.0.0.1:2526). Idempotent: an existing config is left alone.
 *
 *   node provisioning/first-boot.ts [--data-dir ./var]
 */
const args = process.argv.slice(2)
const i = args.indexOf('--data-dir')
const dataDir = resolve(i >= 0 && args[i + 1] ? args[i + 1]! : './var')
const configPath = join(dataDir, 'config.json')
const account = 'statements'
const sender = 'statements@bank.example'
const secretPath = join(dataDir, 'secrets', `submission-${account}.password`)

if (existsSync(configPath)) {
  process.stderr.write(`first-boot: ${configPath} exists, leaving it as it is\n`)
} else {
  const password = randomBytes(18).toString('base64url')
  const raw = {
    // Absolute: the tools find this config from anywhere (--config, $SG_CONFIG) and must read the same data.
    dataDir,
    submission: { accounts: [{ name: account, passwordHash: await hashPassword(password), allowFrom: [] }] },
    // Development box: both signatures for the demo sender domain, and every recipient
    // domain routed to the loopback demo receiver (npm run demo), so nothing leaves the machine.
    signing: { domains: [{ domain: 'bank.example', smimeKey: DEV_SMIME_LABEL, dkimSelector: 'dev' }] },
    delivery: { routes: [{ domain: '*', host: '127.0.0.1', port: 2526, tls: 'opportunistic' }] },
    // Bounces and read receipts come back to the box's listener (127.0.0.1:2525 in development).
    // The two-sends-two-days rule (M11) for the class monthly-high-value, in minutes instead of
    // days and with the latest deadline day, so that npm run demo -- --read-receipts shows it
    // in one sitting; a production box waits 48 hours each time (the default).
    returnPath: {
      domains: [{ from: 'bank.example', returnPath: 'bounce.bank.example' }],
      readReceipts: [{ statementClass: 'monthly-high-value', firstSendWaitMinutes: 1, secondSendWaitMinutes: 1, deadlineDay: 28 }],
    },
  }
  const config = parseConfig(raw) // never write a config the box would refuse
  // The S/MIME key and certificate exist before the config that names them: a crash in
  // between leaves a key without a config (reused next time), never a config without a key.
  if (config.hsm.module === '') {
    const hsm = hsmFromConfig(config, systemClock)
    await hsm.open()
    try {
      const { created, caFile, certificate } = await ensureDevSmime(hsm, { dataDir: config.dataDir, address: sender })
      if (created) {
        process.stderr.write(
          `first-boot: made the S/MIME key "${DEV_SMIME_LABEL}" in the HSM with a certificate for ${sender}\n` +
            `            from a development CA (${caFile}; its key is gone). Not for production.\n`,
        )
      } else process.stderr.write(`first-boot: the HSM already holds "${DEV_SMIME_LABEL}" (${certificate.subject.replace(/\n/g, ', ')})\n`)
    } finally {
      await hsm.close()
    }
  }
  writeFileAtomic(secretPath, `${password}\n`, 0o600)
  writeFileAtomic(configPath, `${JSON.stringify(raw, null, 2)}\n`, 0o600)
  process.stderr.write(
    `first-boot: wrote ${configPath} with submission account "${account}";\n` +
      `            its password is in ${secretPath} (mode 0600). Change it before real use.\n`,
  )
}
