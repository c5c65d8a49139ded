import { parseArgs } from 'node:util'
import { CONFIG_ENV, ConfigError, parseConfig, readConfigFile, type Config } from './load.ts'
import { startingConfig } from './versions.ts'

/** The configuration a box starts with, and where it came from (ConfigVersions records the file as a version when new). */
export interface Starting {
  config: Config
  /** The file given (`--config PATH`, else $SG_CONFIG), if any. */
  path: string | undefined
  /** What the file holds, as given. */
  raw: unknown
  /** The version in force the box starts from, when it is not the file. */
  fromVersion: number | undefined
}

/**
 * S7: the version in force, unless the file given is new since it was last imported. Each
 * configuration read is parsed once (#34). Throws ConfigError for a bad argument, file or value.
 */
export function startingFrom(argv: readonly string[], env: NodeJS.ProcessEnv): Starting {
  let path: string | undefined
  try {
    path = parseArgs({ args: [...argv], options: { config: { type: 'string' } }, strict: true, allowPositionals: false }).values.config
  } catch (err) {
    throw new ConfigError('(arguments)', `${(err as Error).message} (the daemon takes --config PATH, or $${CONFIG_ENV})`)
  }
  path ??= env[CONFIG_ENV] || undefined
  const raw = readConfigFile(path)
  const fromFile = parseConfig(raw)
  const starting = startingConfig(fromFile.dataDir, path ? { raw } : undefined)
  // Not from a version: the file's own (or, without one, the embedded defaults), already read.
  const config = starting.fromVersion === undefined ? fromFile : parseConfig(starting.raw)
  return { config, path, raw, fromVersion: starting.fromVersion }
}
