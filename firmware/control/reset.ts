import { createHash, createPublicKey, verify } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Hsm } from '../../hal/hsm/index.ts'
import { writeFileAtomic } from '../../hal/storage/files.ts'
import { wipeFile, wipeTree, type WipeCount } from '../../hal/storage/wipe.ts'
import type { Config } from '../config/load.ts'
import { canonicalJson } from '../config/versions.ts'
import { CHECKPOINT_KEY_LABEL } from '../keys/labels.ts'
import { boxError } from '../box-errors.ts'
import { SECRET_FILES, valuesAt } from './backup.ts'

/**
 * Factory reset (S13; ETSI EN 303 645 5.11): every object in the HSM token
 * destroyed, the data directory's spool, ledger, configuration versions,
 * administrators, TLS material and secrets overwritten and removed, the
 * secrets the configuration names outside it too — and a certificate of
 * deletion saying what was destroyed, signed in the HSM with the audit
 * checkpoint key as the last thing that key does (the auditors already hold
 * its public key from the trail; the final export carries it too), then that
 * key destroyed as well. After it the box starts as on its first day: no
 * configuration, no administrator, no key.
 */
export const CERTIFICATE_TYPE = 'statement-gateway certificate of deletion'

/**
 * A factory reset two administrators agreed to on the admin page (four eyes),
 * in the data directory until the service manager runs the reset as root
 * before the box's next start (`ExecStartPre=+… factory-reset.ts --pending`):
 * the daemon itself may not write /etc, where the configuration and the PIN are.
 */
export const APPROVED_RESET = 'admin/factory-reset.json'

export interface ApprovedReset {
  requestedBy: string
  approvedBy: string
  reason: string
  approvedAt: string
}

export interface DeletionCertificate {
  type: typeof CERTIFICATE_TYPE
  box: { hostname: string; dataDir: string; serial?: string; model?: string }
  operator: string
  reason: string
  startedAt: string
  finishedAt: string
  hsm: {
    token: string
    module: string
    objectsBefore: number
    destroyed: { label: string; kind: string }[]
    /** Objects in the token after everything but the signing key was destroyed (0 expected). */
    remainingBesidesSigningKey: number
    signingKey: string
  }
  files: Record<string, WipeCount>
  method: string
  auditExport?: { dir: string; sha256sums: string }
}

export interface SignedCertificate {
  certificate: DeletionCertificate
  /** ECDSA P-256 with SHA-256 over the certificate's canonical JSON, DER, base64. */
  signature: string
  publicKey: string
  /** SHA-256 of the canonical JSON, for the paper record. */
  sha256: string
}

/** Verifies a certificate of deletion with the public key it names (which the trail's export also carries). */
export function verifyCertificate(doc: SignedCertificate): boolean {
  const body = Buffer.from(canonicalJson(doc.certificate))
  return (
    createHash('sha256').update(body).digest('hex') === doc.sha256 &&
    verify('sha256', body, createPublicKey(doc.publicKey), Buffer.from(doc.signature, 'base64'))
  )
}

export interface ResetOptions {
  config: Config
  hsm: Hsm
  operator: string
  reason: string
  hostname: string
  now: () => number
  /** The configuration file the box was given (outside the data directory): wiped too. */
  configFile?: string
  /** Exports the trail before it is wiped (the final audit export); returns where. */
  exportAudit?: () => Promise<string>
  /** Where the certificate goes besides the export (written after the wipe: in the emptied data directory is fine). */
  certificateFile: string
  /** Paths in the data directory the wipe leaves (the final export, when it is written there). */
  keep?: readonly string[]
  progress?: (step: string) => void
}

export async function factoryReset(o: ResetOptions): Promise<SignedCertificate> {
  const step = o.progress ?? (() => undefined)
  const startedAt = new Date(o.now()).toISOString()
  const { dataDir } = o.config
  if (o.certificateFile.startsWith(join(dataDir, 'hsm'))) throw boxError('ERESET_INCOMPLETE', 'the certificate of deletion cannot go into the token directory')
  const inventory = join(dataDir, 'inventory.json')
  const inv = existsSync(inventory) ? (JSON.parse(readFileSync(inventory, 'utf8')) as { system?: { serial?: string; model?: string } }) : {}

  step('exporting the audit trail')
  const exported = o.exportAudit ? await o.exportAudit() : undefined

  step('destroying the keys in the HSM')
  const before = await o.hsm.keys.list()
  const destroyed: { label: string; kind: string }[] = []
  for (const label of [...new Set(before.map((k) => k.label))]) {
    if (label === CHECKPOINT_KEY_LABEL) continue
    await o.hsm.keys.destroy(label)
    for (const k of before.filter((x) => x.label === label)) destroyed.push({ label, kind: k.kind })
  }
  const remaining = (await o.hsm.keys.list()).filter((k) => k.label !== CHECKPOINT_KEY_LABEL).length
  if (remaining) throw boxError('ERESET_INCOMPLETE', `${remaining} object(s) are still in the token after destroying them; nothing more was deleted`)

  step('overwriting and removing the data')
  const files: Record<string, WipeCount> = {}
  const embedded = o.config.hsm.module === ''
  const keep = new Set((o.keep ?? []).map((p) => p.slice(dataDir.length + 1).split('/')[0]))
  for (const name of existsSync(dataDir) ? readdirSync(dataDir).sort() : []) {
    if ((name === 'hsm' && embedded) || keep.has(name)) continue // the token after the last signature; the export kept
    files[name] = wipeTree(join(dataDir, name))
  }
  const secrets: WipeCount = { files: 0, bytes: 0 }
  const raw = JSON.parse(JSON.stringify(o.config)) as unknown
  for (const path of [...SECRET_FILES.flatMap((p) => valuesAt(raw, p).map((v) => v.value)), ...(o.configFile ? [o.configFile] : [])]) {
    if (!existsSync(path)) continue
    const c = wipeFile(path)
    secrets.files += c.files
    secrets.bytes += c.bytes
  }
  files['secrets and configuration outside the data directory'] = secrets

  const certificate: DeletionCertificate = {
    type: CERTIFICATE_TYPE,
    box: {
      hostname: o.hostname,
      dataDir,
      ...(inv.system?.serial ? { serial: inv.system.serial } : {}),
      ...(inv.system?.model ? { model: inv.system.model } : {}),
    },
    operator: o.operator,
    reason: o.reason,
    startedAt,
    finishedAt: new Date(o.now()).toISOString(),
    hsm: {
      token: o.config.hsm.tokenLabel,
      module: embedded ? 'embedded SoftHSM2 (its token files are wiped too)' : o.config.hsm.module,
      objectsBefore: before.length,
      destroyed,
      remainingBesidesSigningKey: remaining,
      signingKey: `${CHECKPOINT_KEY_LABEL}: signs this certificate, then is destroyed`,
    },
    files,
    method:
      "each file overwritten once with zeros and fsync'd, then unlinked; mail in the spool was encrypted under HSM keys destroyed above, so " +
      'copies the storage may keep (flash remapping, snapshots) cannot be read (crypto-shredding)',
    ...(exported ? { auditExport: { dir: exported, sha256sums: sha256File(join(exported, 'SHA256SUMS')) } } : {}),
  }
  const body = Buffer.from(canonicalJson(certificate))
  const signature = await o.hsm.keys.sign(CHECKPOINT_KEY_LABEL, 'ecdsa-p256-sha256', body)
  const publicKey = (await o.hsm.keys.publicKey(CHECKPOINT_KEY_LABEL)).export({ type: 'spki', format: 'pem' }).toString()
  const signed: SignedCertificate = { certificate, signature: signature.toString('base64'), publicKey, sha256: createHash('sha256').update(body).digest('hex') }
  const text = `${JSON.stringify(signed, null, 2)}\n`
  writeFileAtomic(o.certificateFile, text, 0o644)
  if (exported) writeFileAtomic(join(exported, 'deletion-certificate.json'), text, 0o644)

  step('destroying the signing key')
  await o.hsm.keys.destroy(CHECKPOINT_KEY_LABEL)
  const left = (await o.hsm.keys.list()).length
  if (left) throw boxError('ERESET_INCOMPLETE', `${left} object(s) are still in the token after the signing key was destroyed`)
  return signed
}

/** The embedded token's files, once the HSM is closed (a vendor HSM keeps its token, now empty). */
export function wipeEmbeddedToken(config: Config): WipeCount {
  return config.hsm.module === '' ? wipeTree(join(config.dataDir, 'hsm')) : { files: 0, bytes: 0 }
}

function sha256File(path: string): string {
  return existsSync(path) ? createHash('sha256').update(readFileSync(path)).digest('hex') : ''
}
