import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { CONFIG_ENV, ConfigError, configPathFrom, parseConfig, readConfigFile, type Config } from '../firmware/config/load.ts'
import { startingConfig } from '../firmware/config/versions.ts'

/** The development box's config, written by first boot (`npm start`). */
export const DEV_CONFIG = './var/config.json'

/** `tool: message` on stderr and exit (1: the command failed; 2: it was used wrongly). */
export function failer(tool: string): (message: string, code?: number) => never {
  return (message, code = 1) => {
    process.stderr.write(`${tool}: ${message}\n`)
    process.exit(code)
  }
}

/**
 * One rule for every tool (the config the box runs with): `--config FILE`,
 * else $SG_CONFIG, else ./var/config.json when it exists (the development box
 * `npm start` made), else the built-in defaults.
 */
export function toolConfigSource(path: string | undefined, env: NodeJS.ProcessEnv = process.env): { path: string | undefined; why: string } {
  if (path) return { path, why: '--config' }
  const fromEnv = configPathFrom([], env)
  if (fromEnv) return { path: fromEnv, why: `$${CONFIG_ENV}` }
  if (existsSync(DEV_CONFIG)) return { path: DEV_CONFIG, why: "the development box's, made by npm start" }
  return { path: undefined, why: 'no --config, no $SG_CONFIG and no ./var/config.json' }
}

/** The first line of every tool's --help: which configuration it reads, and why. */
export function configLine(path: string | undefined): string {
  const s = toolConfigSource(path)
  return `config: ${s.path ? resolve(s.path) : 'built-in defaults'} (${s.why}; --config FILE or $${CONFIG_ENV} choose another)`
}

/**
 * The box's configuration for a tool: the version in force in the data
 * directory the file names, as the box runs it (S7: changes approved on the
 * admin page are in it), or the file itself while it is newer than the last
 * import or no version exists yet. A bad one exits 2.
 */
export function toolConfig(tool: string, path: string | undefined): Config {
  try {
    const file = toolConfigSource(path).path
    const raw = readConfigFile(file)
    return parseConfig(startingConfig(parseConfig(raw).dataDir, file ? { raw } : undefined).raw)
  } catch (err) {
    if (err instanceof ConfigError) failer(tool)(`configuration error: ${err.message}`, 2)
    throw err
  }
}

/** `--help`: which configuration the tool reads (first line), then its usage; exit 0. */
export function printHelp(usage: string, configPath: string | undefined): never {
  process.stdout.write(`${configLine(configPath)}\n\n${usage.trimEnd()}\n`)
  process.exit(0)
}
