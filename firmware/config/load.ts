import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { migrateConfig } from './migrations.ts'
import { schema, type Config } from './schema.ts'
import { ConfigError, parseWith } from './types.ts'

export { ConfigError }
export type { Config }

/** Environment variable naming the config file when no `--config` flag is given. */
export const CONFIG_ENV = 'SG_CONFIG'

/**
 * Brings raw config data to the current schema (migrations.ts), validates it,
 * fills defaults, resolves paths and freezes the result: at run time nothing
 * may change the config in place (changes go through the admin page's
 * proposals, which record and validate them; S7).
 */
export function parseConfig(raw: unknown, cwd = process.cwd()): Config {
  const parsed = parseWith(schema, migrateConfig(raw ?? {}).config)
  const config = { ...parsed, dataDir: resolve(cwd, parsed.dataDir) }
  return deepFreeze(config)
}

/** Reads and validates a JSON config file. Errors name the file and the key. */
export function loadConfigFile(path: string | undefined): Config {
  return parseConfig(readConfigFile(path))
}

/** The configuration a file holds, as given (JSON, not yet checked); `{}` without a file. */
export function readConfigFile(path: string | undefined): unknown {
  if (!path) return {}
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError('(file)', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new ConfigError('(file)', `${path} is not valid JSON: ${(err as Error).message}`)
  }
  return raw
}

/** The config path from `--config PATH` / `--config=PATH`, else $SG_CONFIG. */
export function configPathFrom(argv: readonly string[], env: NodeJS.ProcessEnv): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--config') return argv[i + 1]
    if (a.startsWith('--config=')) return a.slice('--config='.length)
  }
  return env[CONFIG_ENV] || undefined
}

/** Frozen all the way down: at run time nothing changes a configuration in place. */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}
