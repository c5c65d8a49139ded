import { SCHEMA_VERSION } from './schema.ts'
import { ConfigError } from './types.ts'

/**
 * Schema migrations (S7, S9): a configuration written for an older schema is
 * brought forward one written step at a time, each step a pure function of
 * the configuration as given (sparse: keys left out keep meaning "the
 * default"). Nothing is rewritten in place: a version in force at an older
 * schema stays in `config/versions/` and the migrated configuration becomes
 * the next version, naming the steps (the way zigbee2mqtt keeps a backup
 * before it migrates its settings), so a firmware rollback can go back to it.
 *
 * A step is added whenever a key is renamed or moved; `SCHEMA_VERSION` goes up
 * with it, and test/fixtures/config/ gets a fixture of the old shape.
 */
export interface Migration {
  from: number
  to: number
  /** What the step changes, in the words the version's reason and the audit trail carry. */
  describe: string
  migrate(config: Record<string, unknown>): Record<string, unknown>
}

type Obj = Record<string, unknown>
const isObj = (v: unknown): v is Obj => !!v && typeof v === 'object' && !Array.isArray(v)

export const MIGRATIONS: readonly Migration[] = [
  {
    from: 1,
    to: 2,
    describe: 'admin.host and admin.port became admin.listen ("host:port"), as returnPath.listen and reports.tracking.listen',
    migrate(config) {
      const admin = config.admin
      if (!isObj(admin) || (!('host' in admin) && !('port' in admin))) return config
      const { host = '127.0.0.1', port = 8443, ...rest } = admin
      if (typeof host !== 'string' || typeof port !== 'number')
        throw new ConfigError('admin', 'host must be a string and port a number to be migrated to admin.listen')
      return { ...config, admin: { ...rest, listen: `${host.includes(':') ? `[${host}]` : host}:${port}` } }
    },
  },
]

/** The schema version a configuration says it was written for; one without the key predates it (1). */
export function schemaVersionOf(raw: unknown): number {
  const v = isObj(raw) ? raw.schemaVersion : undefined
  return typeof v === 'number' ? v : 1
}

/**
 * `raw` brought to the current schema: the configuration and the steps that
 * changed something (none when it reads the same under the current schema: a
 * file that leaves out `schemaVersion` and uses no old key). A configuration
 * from newer firmware is left as it is, for the schema to refuse by name.
 */
export function migrateConfig(raw: unknown): { config: unknown; from: number; steps: readonly Migration[] } {
  const from = schemaVersionOf(raw)
  if (!isObj(raw) || from >= SCHEMA_VERSION) return { config: raw, from, steps: [] }
  let config: Obj = raw
  const steps: Migration[] = []
  for (let v = from; v < SCHEMA_VERSION; v++) {
    const step = MIGRATIONS.find((m) => m.from === v)
    if (!step) throw new ConfigError('schemaVersion', `no migration from schema ${v}`)
    const next = step.migrate(structuredClone(config))
    if (JSON.stringify(next) !== JSON.stringify(config)) steps.push(step)
    config = { ...next, schemaVersion: step.to }
  }
  return { config, from, steps }
}
