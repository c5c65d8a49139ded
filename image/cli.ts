import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign } from 'node:crypto'
import { closeSync, existsSync, fstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { systemClock } from '../hal/clock.ts'
import { BundleError, extractBundle, keyId, openBundle, trustedKeys, type Signature } from '../firmware/update/bundle.ts'
import { versionFileNames, versionNumberOf, versionsDir } from '../firmware/config/versions.ts'
import { Slots, UpdateError } from '../firmware/update/slots.ts'
import { installApproved } from '../firmware/update/staged.ts'
import { failer, toolConfig } from '../provisioning/cli.ts'
import { withToolHsm } from '../provisioning/tool-hsm.ts'
import { buildManifest, collectFiles, gitFacts, writeBundle, type BuildInput } from './build.ts'

const USAGE = `usage: npm run image -- <command>

  keygen --out DIR              a throw-away vendor key pair (Ed25519) for development and tests
  build --version V --security-version N [--min-upgrade-from V] [--out FILE]
        (--key PRIVATE.pem | --hsm-label LABEL [--config FILE]) [--add-key PUB.pem]...
        [--source DIR] [--allow-dirty] [--check-reproducible]
                                a signed bundle from a clean checkout (sources, pinned runtime,
                                production node_modules); --check-reproducible builds twice
  verify FILE (--root DIR | --trust PUB.pem...)
                                the signature, the manifest, every file's hash; changes nothing
  init FILE --root DIR --trust PUB.pem...
                                the first version of a new box into slot a
  install FILE [--root DIR] [--config FILE] [--allow-downgrade]
                                into the other slot, on trial; the service then restarts into it.
                                A lower version, or the running one again, only with --allow-downgrade
  boot [--root DIR] [--config FILE]
                                before each start (the unit's ExecStartPre): count the trial's
                                attempts, roll back after ${3}
  status [--root DIR]           slots, versions, trial, minimum security version, last update

--root defaults to /opt/statement-gateway.
`

const fail: (message: string, code?: number) => never = failer('image')
const { values, positionals } = parseArgs({
  args: process.argv.slice(2),
  options: {
    out: { type: 'string' },
    version: { type: 'string' },
    'security-version': { type: 'string' },
    'min-upgrade-from': { type: 'string' },
    key: { type: 'string' },
    'hsm-label': { type: 'string' },
    config: { type: 'string' },
    'add-key': { type: 'string', multiple: true },
    source: { type: 'string' },
    tree: { type: 'string' },
    'allow-dirty': { type: 'boolean' },
    'allow-downgrade': { type: 'boolean' },
    'check-reproducible': { type: 'boolean' },
    root: { type: 'string' },
    trust: { type: 'string', multiple: true },
    help: { type: 'boolean', short: 'h' },
  },
  allowPositionals: true,
})
if (values.help) {
  process.stdout.write(USAGE)
  process.exit(0)
}
const [command, file] = positionals
const root = resolve(values.root ?? '/opt/statement-gateway')

async function signManifest(bytes: Buffer): Promise<Signature> {
  if (values.key) {
    const key = createPrivateKey(readFileSync(values.key))
    const ed = key.asymmetricKeyType === 'ed25519'
    return { keyId: keyId(createPublicKey(key)), alg: ed ? 'ed25519' : 'ecdsa-p256-sha256', sig: sign(ed ? null : 'sha256', bytes, key).toString('base64') }
  }
  const label = values['hsm-label'] ?? fail('build needs --key PRIVATE.pem (development) or --hsm-label LABEL (the release key in the HSM)', 2)
  // A release is signed in the vendor's HSM through the same PKCS#11 layer as the box's own keys.
  return withToolHsm(toolConfig('image', values.config), fail, async (hsm) => ({
    keyId: keyId(await hsm.keys.publicKey(label)),
    alg: 'ecdsa-p256-sha256' as const,
    sig: (await hsm.keys.sign(label, 'ecdsa-p256-sha256', bytes)).toString('base64'),
  }))
}

async function build(out: string): Promise<string> {
  const source = resolve(values.source ?? '.')
  const facts = values.tree ? { commit: 'tree', time: '2026-01-01T00:00:00Z', clean: true } : gitFacts(source)
  if (!facts.clean && !values['allow-dirty']) fail('the checkout has uncommitted changes: build from a clean checkout (or --allow-dirty for a trial)')
  const input: BuildInput = {
    source,
    version: values.version ?? fail('build needs --version', 2),
    securityVersion: Number(values['security-version'] ?? fail('build needs --security-version (the anti-rollback number)', 2)),
    minUpgradeFrom: values['min-upgrade-from'] ?? '0.1.0',
    addKeys: (values['add-key'] ?? []).map((p) => readFileSync(p, 'utf8')),
    ...(values.tree ? { tree: resolve(values.tree) } : {}),
  }
  const files = collectFiles(input)
  const { manifest, bytes } = buildManifest(input, files, facts)
  writeBundle(`${out}.part`, bytes, [await signManifest(bytes)], files)
  renameSync(`${out}.part`, out)
  process.stdout.write(
    `${out}: ${manifest.product} ${manifest.version} (security ${manifest.securityVersion}, from ${manifest.minUpgradeFrom}), ` +
      `${manifest.files.length} files, ${(manifest.payloadBytes / 2 ** 20).toFixed(1)} MiB, commit ${manifest.sourceCommit.slice(0, 12)}\n`,
  )
  return createHash('sha256').update(bytes).digest('hex')
}

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex')

try {
  switch (command) {
    case 'keygen': {
      const dir = resolve(values.out ?? fail('keygen needs --out DIR', 2))
      mkdirSync(dir, { recursive: true })
      const { publicKey, privateKey } = generateKeyPairSync('ed25519')
      writeFileSync(join(dir, 'vendor-key.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 })
      writeFileSync(join(dir, 'vendor-pub.pem'), publicKey.export({ type: 'spki', format: 'pem' }))
      process.stdout.write(`${dir}/vendor-key.pem (keep it off the box) and vendor-pub.pem, key id ${keyId(publicKey)}\n`)
      break
    }
    case 'build': {
      const out = resolve(values.out ?? `statement-gateway-${values.version}.sgfw`)
      const manifest = await build(out)
      if (values['check-reproducible']) {
        // Same inputs, same manifest (every file's hash); an ECDSA signature differs each time, an Ed25519 one does not.
        const first = sha256(out)
        const manifest2 = await build(`${out}.again`)
        const sameBytes = sha256(`${out}.again`) === first
        rmSync(`${out}.again`, { force: true })
        const same = manifest === manifest2
        const how = sameBytes ? ' and the same bytes' : ' (the signature differs: ECDSA)'
        process.stdout.write(`reproducible: ${same ? `yes, the same manifest${how}` : 'NO: the manifests differ'}\n`)
        if (!same) process.exitCode = 1
      }
      break
    }
    case 'verify': {
      const keys = values.trust?.length ? values.trust.map((p) => readFileSync(p, 'utf8')) : new Slots(root).state().trustedKeys
      const fd = openSync(file ?? fail('verify needs FILE', 2), 'r')
      try {
        const b = openBundle(fd, fstatSync(fd).size, trustedKeys(keys))
        // Every file read and checked against its hash, as an install would, into a place of its own.
        const scratch = mkdtempSync(join(tmpdir(), 'sg-verify-'))
        const dir = join(scratch, 'slot')
        try {
          extractBundle(fd, b, dir)
        } finally {
          rmSync(scratch, { recursive: true, force: true })
        }
        process.stdout.write(
          `OK: ${b.manifest.product} ${b.manifest.version} (security ${b.manifest.securityVersion}), ` +
            `${b.manifest.files.length} files, signed by ${b.signedBy.slice(0, 16)}\n`,
        )
      } finally {
        closeSync(fd)
      }
      break
    }
    case 'init': {
      const m = new Slots(root).init(
        file ?? fail('init needs FILE', 2),
        (values.trust ?? fail('init needs --trust PUB.pem', 2)).map((p) => readFileSync(p, 'utf8')),
      )
      process.stdout.write(`${root}: version ${m.version} in slot a, committed\n`)
      break
    }
    case 'install': {
      const slots = new Slots(root, () => systemClock.now())
      const configVersion = values.config ? lastConfigVersion(toolConfig('image', values.config).dataDir) : undefined
      try {
        const m = slots.install(file ?? fail('install needs FILE', 2), configVersion, { allowDowngrade: values['allow-downgrade'] })
        process.stdout.write(`version ${m.version} installed in slot ${slots.current()}, on trial: restart the service (systemctl restart statement-gateway)\n`)
      } catch (err) {
        if (err instanceof BundleError) slots.refused(err.version ?? '?', err.message)
        // The version the signed manifest named, when it was read (the reason may already say it).
        if (err instanceof BundleError && err.version && !err.message.includes(err.version)) fail(`refused: ${err.message} (version ${err.version})`)
        throw err
      }
      break
    }
    case 'boot': {
      const slots = new Slots(root)
      if (!existsSync(slots.statePath)) break // not installed from an image (a checkout): nothing to count
      if (values.config) {
        // An update two administrators approved on the admin page goes in first, then starts on trial.
        const dataDir = toolConfig('image', values.config).dataDir
        try {
          const m = installApproved(dataDir, slots, lastConfigVersion(dataDir))
          if (m) process.stdout.write(`version ${m.version} from the admin page installed in slot ${slots.current()}, on trial\n`)
        } catch (err) {
          if (!(err instanceof BundleError)) throw err
          process.stdout.write(`the approved update was refused: ${err.message}\n`)
        }
      }
      const before = slots.state().trial
      const r = slots.boot()
      if (r.rolledBack && before?.configVersionAtStart !== undefined && values.config) {
        const moved = setAsideConfigVersions(toolConfig('image', values.config).dataDir, before.configVersionAtStart)
        if (moved) process.stdout.write(`configuration versions after ${before.configVersionAtStart} set aside: ${moved}\n`)
      }
      if (r.rolledBack) process.stdout.write(`rolled back to slot ${slots.current()}: ${r.rolledBack}\n`)
      if (r.cleaned) process.stdout.write(`removed ${r.cleaned} half-written install(s) (.staging-*) left by an interrupted install\n`)
      break
    }
    case 'status': {
      const slots = new Slots(root)
      process.stdout.write(`${JSON.stringify({ current: slots.current(), ...slots.state(), trustedKeys: slots.state().trustedKeys.length }, null, 2)}\n`)
      break
    }
    default:
      process.stderr.write(USAGE)
      process.exit(2)
  }
} catch (err) {
  if (err instanceof BundleError || err instanceof UpdateError) fail(`refused: ${err.message}`)
  // #31: a file that is not there is a refusal in one line too, not a stack.
  const e = err as NodeJS.ErrnoException
  const why: Record<string, string> = { ENOENT: 'no such file', EACCES: 'permission denied', EISDIR: 'a directory, not a file' }
  if (e.code && why[e.code]) fail(`refused: cannot read ${e.path ?? 'the file'}: ${why[e.code]}`)
  throw err
}

function lastConfigVersion(dataDir: string): number | undefined {
  const last = versionFileNames(versionsDir(dataDir)).at(-1)
  return last ? versionNumberOf(last) : undefined
}

/** A rollback takes the configuration back too: versions the trial's migrations made go aside (kept, not deleted). */
function setAsideConfigVersions(dataDir: string, after: number): number {
  const dir = versionsDir(dataDir)
  const aside = join(dir, `rolled-back-${new Date().toISOString().replace(/[:.]/g, '-')}`)
  let n = 0
  for (const name of versionFileNames(dir)) {
    if (versionNumberOf(name) <= after) continue
    mkdirSync(aside, { recursive: true, mode: 0o700 })
    renameSync(join(dir, name), join(aside, name))
    n++
  }
  return n
}
