import { parseArgs } from 'node:util'
import { systemClock } from '../hal/clock.ts'
import { HsmError } from '../hal/hsm/index.ts'
import { hsmFromConfig } from '../firmware/keys/service.ts'
import { returnPathRecords } from '../firmware/return-path/dns.ts'
import { dkimRecords } from '../firmware/signing/dns.ts'
import { failer, printHelp, toolConfig } from './cli.ts'

const USAGE = `usage: npm run dkim -- dns [--config FILE]

  dns    print the DNS records to publish: TXT records for the DKIM keys of the
         configured signing domains (M4), creating any key that does not exist yet
         in the HSM; and for each return-path domain (returnPath.domains) its MX
         record (reports come back to the box) and SPF record (the egress addresses)
`
const { values, positionals } = parseArgs({
  args: process.argv.slice(2),
  options: { config: { type: 'string' }, help: { type: 'boolean' } },
  allowPositionals: true,
})
if (values.help) printHelp(USAGE, values.config)
const fail = failer('dkim')
if (positionals[0] !== 'dns') fail(USAGE.trimEnd(), 2)
const config = toolConfig('dkim', values.config)
if (!config.signing.domains.some((d) => d.dkimSelector || d.dkimEd25519Selector)) fail('no signing.domains with a dkimSelector in the config')
const hsm = hsmFromConfig(config, systemClock)
try {
  await hsm.open()
  for (const r of await dkimRecords(config, hsm)) {
    if (r.created) process.stderr.write(`dkim: generated the ${r.keyType} key for ${r.domain} selector ${r.selector} in the HSM\n`)
    process.stdout.write(`${r.zone}\n`)
  }
  for (const r of returnPathRecords(config)) process.stdout.write(`${r.zone}\n`)
} catch (err) {
  if (!(err instanceof HsmError)) throw err
  process.exitCode = 1
  process.stderr.write(`dkim: ${err.message}\n`)
} finally {
  await hsm.close()
}
