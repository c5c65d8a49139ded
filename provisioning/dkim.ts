import { parseArgs } from 'node:util'
import { systemClock } from '../hal/clock.ts'
import { HsmError } from '../hal/hsm/index.ts'
import { ConfigError, configPathFrom, loadConfigFile } from '../firmware/config/load.ts'
import { hsmFromConfig } from '../firmware/keys/service.ts'
import { dkimDnsRecord } from '../firmware/signing/dkim.ts'
import { dkimKeyLabel } from '../firmware/signing/stage.ts'

/**
 * Prints the DNS TXT records to publish for the DKIM keys of the configured
 * signing domains (M4), creating any key that does not exist yet.
 *
 *   npm run dkim -- dns [--config FILE]
 */
const { values, positionals } = parseArgs({ args: process.argv.slice(2), options: { config: { type: 'string' } }, allowPositionals: true })
if (positionals[0] !== 'dns') {
  process.stderr.write('usage: npm run dkim -- dns [--config FILE]\n')
  process.exit(2)
}
let config
try {
  config = loadConfigFile(values.config ?? configPathFrom([], process.env))
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`dkim: configuration error: ${err.message}\n`)
    process.exit(2)
  }
  throw err
}
const domains = config.signing.domains.filter((d) => d.dkimSelector || d.dkimEd25519Selector)
if (domains.length === 0) {
  process.stderr.write('dkim: no signing.domains with a dkimSelector in the config\n')
  process.exit(1)
}
const hsm = hsmFromConfig(config, systemClock)
try {
  await hsm.open()
  for (const d of domains) {
    for (const [selector, type] of [[d.dkimSelector, 'rsa-2048'], [d.dkimEd25519Selector, 'ed25519']] as const) {
      if (!selector) continue
      const { publicKey, created } = await hsm.keys.ensureKeyPair(dkimKeyLabel(d.domain, selector), type)
      if (created) process.stderr.write(`dkim: generated the ${type} key for ${d.domain} selector ${selector} in the HSM\n`)
      process.stdout.write(`${dkimDnsRecord(d.domain, selector, publicKey)}\n`)
    }
  }
} catch (err) {
  if (!(err instanceof HsmError)) throw err
  process.stderr.write(`dkim: ${err.message}\n`)
  process.exitCode = 1
} finally {
  await hsm.close()
}
