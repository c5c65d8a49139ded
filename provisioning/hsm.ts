import { readFileSync } from 'node:fs'
import { X509Certificate } from 'node:crypto'
import { stdin } from 'node:process'
import { parseArgs } from 'node:util'
import { systemClock } from '../hal/clock.ts'
import { HsmError, type KeyPairType } from '../hal/hsm/index.ts'
import { recordAdminAction, type AdminAction } from '../firmware/control/admin-record.ts'
import { BOX_KEYS } from '../firmware/keys/manifest.ts'
import { ConfigError } from '../firmware/config/types.ts'
import { hsmFromConfig, probeFor, signingCertificateLabels } from '../firmware/keys/service.ts'
import { printHelp, toolConfig } from './cli.ts'

const USAGE = `usage: npm run hsm -- <command> [--config FILE]

  init                          create the embedded token (if configured) and the box's keys
  status [LABEL]...              token, keys, and the signing certificates (those the config names, and LABELs) as JSON
  probe                         what the token can do for this configuration (mechanisms, a throw-away key of each type) as JSON;
                                exits 2 naming the config key when the token lacks what it needs
  list                          every object in the token, with its protection flags
  generate LABEL TYPE           generate a key pair in the token (rsa-2048 | rsa-3072 | ec-p256 | ed25519)
  public-key LABEL              print a key pair's public key (PEM)
  csr LABEL --subject DN [--email ADDR]...
                                print a PKCS#10 request signed by the token key
  import-cert LABEL FILE        import a PEM certificate (leaf first, then its chain)
  import-p12 LABEL FILE         import a PKCS#12; passphrase on stdin; the key becomes non-extractable
  certificate LABEL             print the certificate and chain stored under LABEL (PEM)

The PIN is read from the PIN file named in the config; it is never an argument.`

const { values, positionals } = parseArgs({
  args: process.argv.slice(2),
  options: { config: { type: 'string' }, subject: { type: 'string' }, email: { type: 'string', multiple: true }, help: { type: 'boolean' } },
  allowPositionals: true,
})
const [command, ...rest] = positionals

async function readStdin(): Promise<string> {
  let text = ''
  for await (const chunk of stdin) text += chunk
  return text.replace(/\r?\n$/, '')
}

function need(n: number): string[] {
  if (rest.length < n) fail(`"${command}" needs ${n} argument(s)\n\n${USAGE}`)
  return rest
}

function fail(message: string): never {
  process.stderr.write(`hsm: ${message}\n`)
  process.exit(2)
}

if (values.help) printHelp(USAGE, values.config)
if (!command) {
  process.stderr.write(`${USAGE}\n`)
  process.exit(2)
}

const config = toolConfig('hsm', values.config)
const hsm = hsmFromConfig(config, systemClock)
const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`)

/** What a key-management command did, for the audit trail (every admin action audited). */
let action: AdminAction | undefined
const certDetail = (leaf: X509Certificate, chain: readonly X509Certificate[]) =>
  `${leaf.subject.replace(/\n/g, ', ')}; serial ${leaf.serialNumber}; valid to ${leaf.validToDate.toISOString()}; ${chain.length} chain certificate(s)`

try {
  await hsm.open()
  switch (command) {
    case 'init': {
      const created = await hsm.ensureKeys(BOX_KEYS)
      if (created.length || hsm.createdToken)
        action = {
          action: 'hsm.init',
          outcome: 'ok',
          detail: `${hsm.createdToken ? 'created the embedded token; ' : ''}generated ${created.join(', ') || 'no key'}`,
        }
      if (hsm.createdToken) process.stderr.write(`hsm: created the embedded token in ${config.dataDir}/hsm (PIN files are mode 0600)\n`)
      process.stderr.write(created.length ? `hsm: generated ${created.join(', ')}\n` : 'hsm: all keys present, nothing to do\n')
      out(JSON.stringify(await hsm.status(BOX_KEYS), null, 2))
      break
    }
    case 'probe': {
      const report = await probeFor(hsm, config).catch((err: unknown) => {
        if (err instanceof ConfigError) fail(err.message)
        throw err
      })
      out(JSON.stringify(report, null, 2))
      break
    }
    case 'status':
      // The certificates the configuration signs with, and any other labels asked for.
      out(JSON.stringify(await hsm.status(BOX_KEYS, [...new Set([...signingCertificateLabels(config), ...rest])]), null, 2))
      break
    case 'list':
      for (const k of await hsm.keys.list()) {
        out(
          `${k.kind.padEnd(12)} ${k.keyType.padEnd(15)} ` +
            `${k.label}${k.sensitive === undefined ? '' : `  sensitive=${k.sensitive} extractable=${k.extractable}`}`,
        )
      }
      break
    case 'generate': {
      const [label, type] = need(2)
      if (!['rsa-2048', 'rsa-3072', 'ec-p256', 'ed25519'].includes(type!)) fail(`unknown key type "${type}"`)
      action = { action: 'hsm.generate', target: label, outcome: 'refused' }
      const pub = await hsm.keys.generateKeyPair(label!, type as KeyPairType)
      action = { action: 'hsm.generate', target: label, outcome: 'ok', detail: `${type} key pair, private key non-extractable` }
      out(pub.export({ type: 'spki', format: 'pem' }).toString())
      break
    }
    case 'public-key':
      out((await hsm.keys.publicKey(need(1)[0]!)).export({ type: 'spki', format: 'pem' }).toString())
      break
    case 'csr': {
      if (!values.subject) fail('csr needs --subject "CN=…,O=…,C=TW"')
      const [label] = need(1)
      action = { action: 'hsm.csr', target: label, outcome: 'refused' }
      out(await hsm.certs.createCsr(label!, values.subject, values.email ?? []))
      action = { action: 'hsm.csr', target: label, outcome: 'ok', detail: `signed a certificate request for ${values.subject}` }
      break
    }
    case 'import-cert': {
      const [label, file] = need(2)
      const pems = readFileSync(file!, 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
      if (pems.length === 0) fail(`${file} holds no PEM certificate`)
      const [leaf, ...chain] = pems.map((p) => new X509Certificate(p))
      action = { action: 'hsm.import-cert', target: label, outcome: 'refused', detail: certDetail(leaf!, chain) }
      await hsm.certs.importCertificate(label!, leaf!, chain)
      action = { ...action, outcome: 'ok' }
      process.stderr.write(`hsm: imported ${leaf!.subject.replace(/\n/g, ', ')} with ${chain.length} chain certificate(s) as "${label}"\n`)
      break
    }
    case 'import-p12': {
      const [label, file] = need(2)
      action = { action: 'hsm.import-p12', target: label, outcome: 'refused' }
      const { leaf, chain } = await hsm.certs.importPkcs12(label!, readFileSync(file!), await readStdin())
      action = { action: 'hsm.import-p12', target: label, outcome: 'ok', detail: `key made non-extractable; ${certDetail(leaf, chain)}` }
      process.stderr.write(
        `hsm: imported the key (non-extractable) and ${leaf.subject.replace(/\n/g, ', ')} with ${chain.length} chain certificate(s) as "${label}".\n` +
          `     The box kept no copy of ${file}; store or destroy it according to your key policy.\n`,
      )
      break
    }
    case 'certificate':
      for (const c of await hsm.certs.chain(need(1)[0]!)) out(c.toString())
      break
    default:
      fail(`unknown command "${command}"\n\n${USAGE}`)
  }
} catch (err) {
  if (action) action = { ...action, outcome: 'refused', reason: (err as Error).message.slice(0, 300) }
  if (err instanceof HsmError) {
    process.stderr.write(`hsm: ${err.message}\n`)
    process.exitCode = 1
  } else throw err
} finally {
  if (action) {
    try {
      const where = await recordAdminAction(config, hsm, systemClock, action)
      process.stderr.write(`hsm: recorded in the audit trail${where === 'box' ? ' (through the running box)' : ''}\n`)
    } catch (err) {
      process.stderr.write(`hsm: the action was NOT recorded in the audit trail: ${(err as Error).message}\n`)
      process.exitCode = 1
    }
  }
  await hsm.close()
}
