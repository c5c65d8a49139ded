import { timingSafeEqual } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Clock } from '../../hal/clock.ts'
import { writeFileAtomic } from '../../hal/storage/files.ts'
import type { Component } from '../component.ts'
import type { EventSink } from '../events.ts'
import type { Logger } from '../log.ts'
import { createError } from '../box-errors.ts'
import { migrateConfig } from './migrations.ts'
import { SCHEMA_VERSION } from './schema.ts'

/**
 * The configuration as numbered versions (S7, S9): `<dataDir>/config/versions/
 * 000041.json`, each with who made it, who approved it, when and why, the
 * schema version, and an HMAC under an HSM key over its bytes. The newest is
 * the one in force. The box refuses to start while any version fails its HMAC
 * and names the file, so a configuration edited on disk behind everyone's
 * back is caught at the next start.
 *
 * The development path keeps working: the file given with `--config` (or
 * $SG_CONFIG, or the embedded defaults) is compared with the version in force
 * at each start, and when it differs it becomes a new version, recorded as
 * imported from that file.
 */
export interface ConfigVersion {
  number: number
  schemaVersion: number
  /** ISO 8601. */
  time: string
  author: string
  /** Who approved it ('' for an import from a file at start, which no one approves). */
  approver: string
  reason: string
  /** `migration`: made by new firmware from the version before it, which is kept (migrations.ts). */
  source: 'file' | 'page' | 'restore' | 'migration'
  /** The configuration as given (before defaults are filled in), at `schemaVersion`. */
  config: unknown
}

/** A version file that fails its check: the box does not start on it. */
export class ConfigTamperError extends createError('ECONFIG_TAMPERED', 'ConfigTamperError') {
  readonly file: string
  constructor(file: string, why: string) {
    super(`configuration version ${file} ${why}: it was changed outside the box. Put back the file from a backup, or remove it and the versions after it.`)
    this.file = file
  }
}

const MAC_PREFIX = 'hmac-sha256:'
const NAME = /^(\d{6})\.json$/

/** Where a box keeps its configuration versions. */
export const versionsDir = (dataDir: string): string => join(dataDir, 'config', 'versions')

/** The number of a version file (`000007.json` → 7). */
export const versionNumberOf = (name: string): number => Number(NAME.exec(name)?.[1] ?? NaN)

/** JSON with its object keys sorted: two configurations that say the same thing read the same. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  )
}

export class ConfigVersions implements Component {
  readonly name = 'config-versions'
  readonly dir: string
  readonly #mac: (data: Buffer) => Promise<Buffer>
  readonly #clock: Clock
  readonly #events: EventSink
  readonly #log: Logger | undefined
  readonly #given: { raw: unknown; from: string } | undefined

  /**
   * `mac`: an HMAC computed in the HSM (the key never leaves it). `given`: the
   * configuration the box was started with and where it came from, imported at
   * start when it differs from the version in force.
   */
  constructor(o: {
    dataDir: string
    mac: (data: Buffer) => Promise<Buffer>
    clock: Clock
    events: EventSink
    log?: Logger
    given?: { raw: unknown; from: string }
  }) {
    this.dir = versionsDir(o.dataDir)
    this.#mac = o.mac
    this.#clock = o.clock
    this.#events = o.events
    this.#log = o.log
    this.#given = o.given
  }

  async start(): Promise<void> {
    const versions = await this.verifyAll()
    const given = this.#given
    const last = versions.at(-1)
    if (given && importNeeded(versions, given.raw)) {
      const m = migrateConfig(given.raw)
      const v = await this.add({
        config: m.steps.length ? m.config : given.raw,
        author: given.from,
        approver: '',
        reason: (last ? `imported at start: ${given.from} differs from version ${last.number}` : 'the first configuration of this box') + migratedNote(m),
        source: 'file',
      })
      this.#log?.info({ version: v.number, from: given.from }, 'configuration imported as a new version')
      return
    }
    // New firmware with a newer schema: the version in force is carried forward as the next one, and kept.
    const m = last && migrateConfig(last.config)
    if (!last || !m?.steps.length) return
    const v = await this.add({
      config: m.config,
      author: 'firmware',
      approver: '',
      reason: `version ${last.number} carried forward${migratedNote(m)}`,
      source: 'migration',
    })
    this.#log?.info({ version: v.number, from: last.number, steps: m.steps.map((x) => `${x.from}->${x.to}`) }, 'configuration migrated to the new schema')
  }

  async stop(): Promise<void> {}

  /** Every version, oldest first, each checked; the first that fails throws ConfigTamperError naming its file. */
  async verifyAll(): Promise<ConfigVersion[]> {
    const out: ConfigVersion[] = []
    for (const name of this.#names()) out.push(await this.#read(name))
    return out
  }

  /** The version in force (the newest), checked; undefined before the first. */
  async inForce(): Promise<ConfigVersion | undefined> {
    const last = this.#names().at(-1)
    return last ? this.#read(last) : undefined
  }

  /** A new version after the newest, written whole (0600) with its HMAC, and recorded in the audit trail. */
  async add(v: Omit<ConfigVersion, 'number' | 'schemaVersion' | 'time'>): Promise<ConfigVersion> {
    const last = this.#names().at(-1)
    const number = last ? versionNumberOf(last) + 1 : 1
    const version: ConfigVersion = {
      number,
      schemaVersion: SCHEMA_VERSION,
      time: new Date(this.#clock.now()).toISOString(),
      author: v.author,
      approver: v.approver,
      reason: v.reason,
      source: v.source,
      config: v.config,
    }
    const body = JSON.stringify(version)
    const mac = await this.#mac(Buffer.from(body))
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    writeFileAtomic(join(this.dir, fileName(number)), `{"mac":"${MAC_PREFIX}${mac.toString('hex')}","version":${body}}\n`, 0o600)
    this.#events.emit({ type: 'config.version', number, source: v.source, author: v.author, approver: v.approver, reason: v.reason })
    return version
  }

  #names(): string[] {
    return versionFileNames(this.dir)
  }

  async #read(name: string): Promise<ConfigVersion> {
    const file = join(this.dir, name)
    let doc: { mac?: unknown; version?: unknown }
    try {
      doc = JSON.parse(readFileSync(file, 'utf8')) as typeof doc
    } catch {
      throw new ConfigTamperError(file, 'is not the JSON the box wrote')
    }
    if (typeof doc.mac !== 'string' || !doc.mac.startsWith(MAC_PREFIX) || !doc.version || typeof doc.version !== 'object')
      throw new ConfigTamperError(file, 'has no HMAC')
    const body = JSON.stringify(doc.version)
    const want = await this.#mac(Buffer.from(body))
    const got = Buffer.from(doc.mac.slice(MAC_PREFIX.length), 'hex')
    if (got.length !== want.length || !timingSafeEqual(got, want)) throw new ConfigTamperError(file, 'fails its HMAC check')
    const v = doc.version as ConfigVersion
    if (fileName(v.number) !== name) throw new ConfigTamperError(file, `holds version ${v.number}, not the one its name says`)
    return v
  }
}

/** The version files in `dir` (`000001.json`, …), oldest first; none when it does not exist yet. */
export function versionFileNames(dir: string): string[] {
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  return names.filter((n) => NAME.test(n)).sort()
}

const fileName = (n: number) => `${String(n).padStart(6, '0')}.json`

/**
 * Whether the configuration file a box is started with is new: it says
 * something else than the last version imported from a file. An unchanged file
 * is not imported again, so changes approved on the admin page since then stay
 * in force across restarts.
 */
function importNeeded(versions: readonly ConfigVersion[], raw: unknown): boolean {
  // Compared at the current schema: a file of an older schema is the same file after an upgrade.
  const same = (a: unknown, b: unknown) => canonicalJson(migrateConfig(a).config) === canonicalJson(migrateConfig(b).config)
  const fromFile = versions.filter((v) => v.source === 'file').at(-1)
  if (!fromFile) return !same(versions.at(-1)?.config ?? null, raw)
  return !same(fromFile.config, raw)
}

/** The steps that brought a configuration to the current schema, for a version's reason. */
function migratedNote(m: ReturnType<typeof migrateConfig>): string {
  return m.steps.length ? ` (schema ${m.from} migrated to ${SCHEMA_VERSION}: ${m.steps.map((s) => s.describe).join('; ')})` : ''
}

/**
 * The configuration a box starts on, read before the HSM is open (the HMACs
 * are checked as soon as it is, before anything else starts): the file's when
 * it is new (or there are no versions yet), else the version in force. Without
 * a file (the appliance), the version in force; the defaults on a first start.
 */
export function startingConfig(dataDir: string, file: { raw: unknown } | undefined): { raw: unknown; fromVersion: number | undefined } {
  const dir = versionsDir(dataDir)
  const names = versionFileNames(dir)
  const versions: ConfigVersion[] = []
  for (const n of names) {
    try {
      versions.push((JSON.parse(readFileSync(join(dir, n), 'utf8')) as { version: ConfigVersion }).version)
    } catch {
      // A damaged file stops the start when the versions are checked; start from the file meanwhile.
      return { raw: file?.raw ?? {}, fromVersion: undefined }
    }
  }
  const last = versions.at(-1)
  if (file && (!last || importNeeded(versions, file.raw))) return { raw: file.raw, fromVersion: undefined }
  return last ? { raw: last.config, fromVersion: last.number } : { raw: {}, fromVersion: undefined }
}
