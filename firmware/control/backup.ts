import { createCipheriv, createDecipheriv, createHash, randomBytes, scryptSync } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import type { Hsm } from '../../hal/hsm/index.ts'
import { spkiSha256 } from '../../hal/crypto/der.ts'
import { writeFileAtomic } from '../../hal/storage/files.ts'
import { configDiff } from '../audit/config-change.ts'
import { CHECKPOINT_KEY_LABEL, CONFIG_VERSION_LABEL, dkimKeyLabel } from '../keys/labels.ts'
import { BOX_KEYS } from '../keys/manifest.ts'
import { parseConfig, type Config } from '../config/load.ts'
import { migrateConfig } from '../config/migrations.ts'
import { SCHEMA_VERSION } from '../config/schema.ts'
import { canonicalJson, versionFileNames, versionsDir, type ConfigVersion } from '../config/versions.ts'
import { createError, boxError } from '../box-errors.ts'

/**
 * Backup and restore of the configuration for the second site (S12): one
 * encrypted bundle (AES-256-GCM under a key scrypt derives from a passphrase)
 * with every configuration version, the files the configuration names (consent
 * lists, rules, CA certificates), the administrators (hashes only), and what the
 * HSM must hold for it — labels with a key check value or public-key hash, and
 * the signing certificates. Never a private key: those move between HSMs only
 * by the HSM vendor's own backup means, and the restore checks they did.
 *
 * A restore takes the standby's own site-local keys (addresses, ports, data
 * directory, HSM, egress) and the backup's everything else, and becomes a
 * proposal a second person approves on the standby's admin page (S5, S7).
 */
export const BACKUP_FORMAT = 'statement-gateway-config-backup'

/** scrypt cost: 2^17 × 8 × 128 bytes = 128 MiB and about half a second per try, for whoever holds a stolen bundle. */
const KDF = { name: 'scrypt', N: 2 ** 17, r: 8, p: 1 } as const
export const MIN_PASSPHRASE = 16

/** Keys that belong to one site: a restore keeps the standby's own. */
export const SITE_LOCAL_KEYS = [
  'dataDir',
  'log',
  'hsm',
  'submission.hostname',
  'submission.host',
  'submission.starttlsPort',
  'submission.implicitTlsPort',
  'submission.tls',
  'admin.listen',
  'admin.tls',
  'admin.metrics',
  'returnPath.listen',
  'reports.boxId',
  'reports.postgres',
  'reports.tracking.listen',
  'delivery.egress',
  'delivery.tcDevices',
  'audit.syslog.hostname',
] as const

/** Files the configuration names whose contents travel in the bundle (`[]`: each item of a list). */
export const CARRIED_FILES = [
  'policy.profiles[].consentFile',
  'returnPath.rulesFile',
  'delivery.tlsCaFile',
  'signing.encryptTo[].certFile',
  'audit.syslog.caFile',
  'reports.webhooks.endpoints[].caFile',
] as const

/** Secrets the configuration names: never in the bundle; the standby needs its own. */
export const SECRET_FILES = ['hsm.pinFile', 'reports.postgres.passwordFile', 'admin.metrics.tokenFile', 'submission.tls.keyFile', 'admin.tls.keyFile'] as const

/** HSM keys each box may have its own of; every other must be the primary's, or mail, links and logins break. */
const OWN_KEYS = new Set<string>([CHECKPOINT_KEY_LABEL, CONFIG_VERSION_LABEL])

export interface ExpectedKey {
  label: string
  kind: 'secret' | 'pair'
  /** Present in the primary's HSM when the backup was made. */
  present: boolean
  /** `kcv:` the first 8 bytes of an HMAC over a fixed text; `spki-sha256:` of the public key. */
  check?: string
  /** The standby may have its own (audit checkpoints, configuration HMACs). */
  own: boolean
  purpose: string
}

export interface BackupPayload {
  createdAt: string
  hostname: string
  schemaVersion: number
  inForce: number
  /** The configuration in force, at `schemaVersion`. */
  config: unknown
  /** Every version file as the primary wrote it (its HMACs are under the primary's key: a record, not a source). */
  versions: { name: string; text: string }[]
  files: { key: string; path: string; sha256: string; data: string }[]
  secretsExpected: { key: string; path: string }[]
  /** The administrators file (password hashes, sealed TOTP secrets), or null when there are none. */
  adminUsers: unknown
  hsm: { keys: ExpectedKey[]; certificates: { label: string; pem: string }[] }
}

type Segment = string | number
type Raw = Record<string, unknown>
const isObj = (v: unknown): v is Raw => !!v && typeof v === 'object' && !Array.isArray(v)

/** Concrete paths of a pattern like `policy.profiles[].consentFile` in a raw configuration, with their string values. */
export function valuesAt(raw: unknown, pattern: string): { path: Segment[]; key: string; value: string }[] {
  const out: { path: Segment[]; key: string; value: string }[] = []
  const walk = (v: unknown, parts: string[], path: Segment[]) => {
    if (!parts.length) {
      if (typeof v === 'string' && v) out.push({ path, key: keyOf(path), value: v })
      return
    }
    const [head, ...rest] = parts
    const list = head!.endsWith('[]')
    const name = list ? head!.slice(0, -2) : head!
    if (!isObj(v) || !(name in v)) return
    const next = v[name]
    if (!list) return walk(next, rest, [...path, name])
    if (Array.isArray(next)) next.forEach((item, i) => walk(item, rest, [...path, name, i]))
  }
  walk(raw, pattern.split('.'), [])
  return out
}

const keyOf = (path: Segment[]) => path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i ? `.${p}` : p)).join('')

function setAt(raw: Raw, path: Segment[], value: unknown): void {
  let v: Raw | unknown[] = raw
  for (const p of path.slice(0, -1)) {
    const holder = v as Record<Segment, unknown>
    if (!isObj(holder[p]) && !Array.isArray(holder[p])) holder[p] = {}
    v = holder[p] as Raw
  }
  const last = path.at(-1)!
  if (value === undefined) delete (v as Record<Segment, unknown>)[last]
  else (v as Record<Segment, unknown>)[last] = value
}

function getAt(raw: unknown, path: Segment[]): unknown {
  let v: unknown = raw
  for (const p of path) v = isObj(v) || Array.isArray(v) ? (v as Record<Segment, unknown>)[p] : undefined
  return v
}

/** The keys the box's configuration expects in the HSM: the box's own, S/MIME and DKIM keys of the signing domains. */
export function expectedKeyLabels(config: Config): { label: string; kind: 'secret' | 'pair'; purpose: string }[] {
  const keys = BOX_KEYS.map((k) => ({
    label: k.label,
    kind: k.type === 'hmac-sha256' || k.type === 'aes-256' ? ('secret' as const) : ('pair' as const),
    purpose: k.purpose,
  }))
  for (const d of config.signing.domains) {
    if (d.smimeKey) keys.push({ label: d.smimeKey, kind: 'pair', purpose: `S/MIME key of ${d.domain} (customers verify its certificate)` })
    if (d.dkimSelector) keys.push({ label: dkimKeyLabel(d.domain, d.dkimSelector), kind: 'pair', purpose: `DKIM key of ${d.domain} (published in DNS)` })
    if (d.dkimEd25519Selector)
      keys.push({ label: dkimKeyLabel(d.domain, d.dkimEd25519Selector), kind: 'pair', purpose: `DKIM Ed25519 key of ${d.domain} (published in DNS)` })
  }
  for (const s of config.signing.senders) if (s.smimeKey) keys.push({ label: s.smimeKey, kind: 'pair', purpose: `S/MIME key of ${s.address}` })
  return [...new Map(keys.map((k) => [k.label, k])).values()]
}

const KCV_TEXT = Buffer.from('statement-gateway key check value')

/** What shows that two HSMs hold the same key without revealing it: a KCV for secret keys, the public key's hash for pairs. */
async function keyCheck(hsm: Hsm, label: string, kind: 'secret' | 'pair'): Promise<string | undefined> {
  if (kind === 'secret') {
    if (!(await hsm.keys.exists(label, 'secret'))) return undefined
    return `kcv:${(await hsm.keys.hmac(label, KCV_TEXT)).subarray(0, 8).toString('hex')}`
  }
  if (!(await hsm.keys.exists(label, 'private'))) return undefined
  return `spki-sha256:${spkiSha256(await hsm.keys.publicKey(label))}`
}

/** Everything a second site needs besides HSM keys, read from a box's data directory and HSM. */
export async function collectBackup(o: { config: Config; hsm: Hsm; versionsDir: string; hostname: string; now: number }): Promise<BackupPayload> {
  const versions = versionFileNames(o.versionsDir).map((name) => ({ name, text: readFileSync(join(o.versionsDir, name), 'utf8') }))
  const last = versions.at(-1)
  if (!last) throw boxError('EBACKUP_INVALID', 'this box has no configuration version yet: start it once first')
  const inForce = (JSON.parse(last.text) as { version: ConfigVersion }).version
  const config = migrateConfig(inForce.config).config
  const files = CARRIED_FILES.flatMap((pattern) =>
    valuesAt(config, pattern).map(({ key, value }) => {
      const data = readFileSync(value)
      return { key, path: value, sha256: createHash('sha256').update(data).digest('hex'), data: data.toString('base64') }
    }),
  )
  const secretsExpected = SECRET_FILES.flatMap((pattern) => valuesAt(config, pattern).map(({ key, value }) => ({ key, path: value })))
  const usersFile = join(o.config.dataDir, 'admin', 'users.json')
  const adminUsers = existsSync(usersFile) ? (JSON.parse(readFileSync(usersFile, 'utf8')) as unknown) : null
  const keys: ExpectedKey[] = []
  const certificates: { label: string; pem: string }[] = []
  for (const k of expectedKeyLabels(parseConfig(config))) {
    const check = await keyCheck(o.hsm, k.label, k.kind)
    keys.push({ ...k, present: check !== undefined, ...(check ? { check } : {}), own: OWN_KEYS.has(k.label) })
    if (k.kind === 'pair' && check && k.label.startsWith('smime')) {
      const chain = await o.hsm.certs.chain(k.label).catch(() => [])
      if (chain.length) certificates.push({ label: k.label, pem: chain.map((c) => c.toString()).join('') })
    }
  }
  return {
    createdAt: new Date(o.now).toISOString(),
    hostname: o.hostname,
    schemaVersion: SCHEMA_VERSION,
    inForce: inForce.number,
    config,
    versions,
    files,
    secretsExpected,
    adminUsers,
    hsm: { keys, certificates },
  }
}

interface Envelope {
  format: typeof BACKUP_FORMAT
  formatVersion: 1
  createdAt: string
  hostname: string
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string }
  cipher: 'aes-256-gcm'
  iv: string
}

function deriveKey(passphrase: string, kdf: Envelope['kdf']): Buffer {
  return scryptSync(passphrase.normalize('NFC'), Buffer.from(kdf.salt, 'base64'), 32, { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 256 * 1024 * 1024 })
}

export function passphraseProblem(passphrase: string): string | undefined {
  if ([...passphrase].length < MIN_PASSPHRASE) return `a backup passphrase has at least ${MIN_PASSPHRASE} characters`
  return undefined
}

/** The bundle: a JSON envelope (authenticated as additional data) with the payload encrypted under it. */
export function sealBackup(payload: BackupPayload, passphrase: string): Buffer {
  const problem = passphraseProblem(passphrase)
  if (problem) throw new BackupError(problem)
  const env: Envelope = {
    format: BACKUP_FORMAT,
    formatVersion: 1,
    createdAt: payload.createdAt,
    hostname: payload.hostname,
    kdf: { ...KDF, salt: randomBytes(16).toString('base64') },
    cipher: 'aes-256-gcm',
    iv: randomBytes(12).toString('base64'),
  }
  const cipher = createCipheriv('aes-256-gcm', deriveKey(passphrase, env.kdf), Buffer.from(env.iv, 'base64'))
  cipher.setAAD(Buffer.from(canonicalJson(env)))
  const data = Buffer.concat([cipher.update(JSON.stringify(payload)), cipher.final()])
  return Buffer.from(`${JSON.stringify({ ...env, data: data.toString('base64'), tag: cipher.getAuthTag().toString('base64') })}\n`)
}

export class BackupError extends createError('EBACKUP_INVALID', 'BackupError') {}

/** Opens a bundle: the format checked, then the payload decrypted and authenticated (a wrong passphrase and a changed byte look alike). */
export function openBackup(bundle: Buffer, passphrase: string): BackupPayload {
  let doc: Envelope & { data?: unknown; tag?: unknown }
  try {
    doc = JSON.parse(bundle.toString('utf8')) as typeof doc
  } catch {
    throw new BackupError('not a configuration backup of this box (not JSON)')
  }
  if (!isObj(doc) || doc.format !== BACKUP_FORMAT) throw new BackupError('not a configuration backup of this box')
  if (doc.formatVersion !== 1 || doc.cipher !== 'aes-256-gcm' || doc.kdf?.name !== 'scrypt')
    // JSON, not String(): a hostile file's {"toString": false} made String() throw a TypeError, not this refusal.
    throw new BackupError(`backup format ${JSON.stringify(doc.formatVersion)?.slice(0, 40)} is not one this firmware reads`)
  const { N, r, p } = doc.kdf
  if (!(N >= 2 ** 14 && N <= 2 ** 20 && r >= 8 && r <= 16 && p >= 1 && p <= 4)) throw new BackupError('the backup asks for key derivation costs out of range')
  if (typeof doc.data !== 'string' || typeof doc.tag !== 'string' || typeof doc.iv !== 'string') throw new BackupError('the backup is incomplete')
  const { data, tag, ...env } = doc
  try {
    const decipher = createDecipheriv('aes-256-gcm', deriveKey(passphrase, env.kdf), Buffer.from(env.iv, 'base64'))
    decipher.setAAD(Buffer.from(canonicalJson(env)))
    decipher.setAuthTag(Buffer.from(tag, 'base64'))
    const plain = Buffer.concat([decipher.update(Buffer.from(data, 'base64')), decipher.final()])
    return JSON.parse(plain.toString('utf8')) as BackupPayload
  } catch {
    throw new BackupError('wrong passphrase, or the backup was changed after it was made')
  }
}

export interface KeyFinding {
  label: string
  purpose: string
  state: 'same' | 'missing' | 'different' | 'own' | 'absent on the primary'
}

export interface RestorePlan {
  /** The configuration to propose: the backup's, with this site's own keys and the restored files' paths. */
  config: Raw
  diff: ReturnType<typeof configDiff>
  files: { key: string; from: string; to: string; state: 'restore' | 'same' | 'different on this box' }[]
  secretsExpected: { key: string; path: string; present: boolean }[]
  keys: KeyFinding[]
  /** Keys that must be the primary's and are not: applying anyway breaks what their purpose says. */
  keyProblems: KeyFinding[]
  certificates: { label: string; state: 'same' | 'different' | 'missing' }[]
  adminUsers: 'restore' | 'keep this box’s' | 'none in the backup'
}

/**
 * What a restore would do on this box, changing nothing: the merged
 * configuration and its diff against the version in force, the files, the
 * administrators, and whether this box's HSM holds the keys the primary had.
 */
export async function planRestore(o: { payload: BackupPayload; local: unknown; dataDir: string; hsm: Hsm }): Promise<RestorePlan> {
  const merged = structuredClone(migrateConfig(o.payload.config).config) as Raw
  const local = migrateConfig(o.local).config
  for (const key of SITE_LOCAL_KEYS) {
    const path = key.split('.')
    setAt(merged, path, structuredClone(getAt(local, path)))
  }
  const files: RestorePlan['files'] = []
  for (const f of o.payload.files) {
    const data = Buffer.from(f.data, 'base64')
    if (createHash('sha256').update(data).digest('hex') !== f.sha256) throw new BackupError(`the backup's copy of ${f.path} does not match its hash`)
    if (existsSync(f.path)) {
      const same = createHash('sha256').update(readFileSync(f.path)).digest('hex') === f.sha256
      files.push({ key: f.key, from: f.path, to: f.path, state: same ? 'same' : 'different on this box' })
    } else {
      const to = join(o.dataDir, 'config', 'files', `${f.sha256.slice(0, 16)}-${basename(f.path)}`)
      files.push({ key: f.key, from: f.path, to, state: 'restore' })
      const [found] = valuesAt(merged, f.key.replace(/\[\d+\]/g, '[]')).filter((v) => v.key === f.key)
      if (found) setAt(merged, found.path, to)
    }
  }
  const keys: KeyFinding[] = []
  for (const k of o.payload.hsm.keys) {
    if (!k.present) {
      keys.push({ label: k.label, purpose: k.purpose, state: 'absent on the primary' })
      continue
    }
    const here = await keyCheck(o.hsm, k.label, k.kind)
    keys.push({ label: k.label, purpose: k.purpose, state: k.own ? 'own' : here === undefined ? 'missing' : here === k.check ? 'same' : 'different' })
  }
  const certificates: RestorePlan['certificates'] = []
  for (const c of o.payload.hsm.certificates) {
    const chain = await o.hsm.certs.chain(c.label).catch(() => [])
    certificates.push({ label: c.label, state: !chain.length ? 'missing' : chain.map((x) => x.toString()).join('') === c.pem ? 'same' : 'different' })
  }
  const usersHere = join(o.dataDir, 'admin', 'users.json')
  const haveUsers = existsSync(usersHere) && ((JSON.parse(readFileSync(usersHere, 'utf8')) as { users?: unknown[] }).users?.length ?? 0) > 0
  const inForce = latestVersion(versionsDir(o.dataDir))
  return {
    config: merged,
    // As written (restored files do not exist yet for the schema's checks); the proposal is checked in full when made.
    diff: configDiff({ ...(migrateConfig(inForce?.config ?? o.local).config as Raw), schemaVersion: SCHEMA_VERSION }, merged),
    files,
    // The secrets this box's configuration will name (all in its site-local sections): its own, never from the backup.
    secretsExpected: SECRET_FILES.flatMap((pattern) => valuesAt(merged, pattern).map(({ key, value }) => ({ key, path: value, present: existsSync(value) }))),
    keys,
    keyProblems: keys.filter((k) => k.state === 'missing' || k.state === 'different'),
    certificates,
    adminUsers: !o.payload.adminUsers ? 'none in the backup' : haveUsers ? 'keep this box’s' : 'restore',
  }
}

function latestVersion(dir: string): ConfigVersion | undefined {
  const last = versionFileNames(dir).at(-1)
  return last ? (JSON.parse(readFileSync(join(dir, last), 'utf8')) as { version: ConfigVersion }).version : undefined
}

/** Writes what the plan restores besides the configuration (files, administrators); the configuration itself becomes a proposal. */
export function writeRestoredFiles(plan: RestorePlan, payload: BackupPayload, dataDir: string): void {
  for (const f of plan.files) {
    if (f.state !== 'restore') continue
    const src = payload.files.find((x) => x.key === f.key)!
    mkdirSync(join(dataDir, 'config', 'files'), { recursive: true, mode: 0o700 })
    writeFileAtomic(f.to, Buffer.from(src.data, 'base64'), 0o600)
  }
  if (plan.adminUsers === 'restore') {
    mkdirSync(join(dataDir, 'admin'), { recursive: true, mode: 0o700 })
    writeFileAtomic(join(dataDir, 'admin', 'users.json'), `${JSON.stringify(payload.adminUsers, null, 1)}\n`, 0o600)
  }
}

/**
 * S12: the admin page's "download a backup": only checked versions go in (`verify` throws
 * on one edited on disk), named for the box and the day, sealed with the passphrase.
 */
export function namedBackup(o: { config: Config; hsm: Hsm; versionsDir: string; hostname: string; verify: () => Promise<unknown> }) {
  return async (passphrase: string): Promise<{ file: string; bundle: Buffer; detail: string }> => {
    await o.verify()
    const payload = await collectBackup({ config: o.config, hsm: o.hsm, versionsDir: o.versionsDir, hostname: o.hostname, now: Date.now() })
    return {
      file: `sg-config-${o.hostname}-${payload.createdAt.slice(0, 10)}.sgbk`,
      bundle: sealBackup(payload, passphrase),
      detail: `version ${payload.inForce}: ${payload.versions.length} versions, ${payload.files.length} files, ${payload.hsm.keys.length} HSM labels`,
    }
  }
}
