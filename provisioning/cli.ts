import { ConfigError, configPathFrom, loadConfigFile, type Config } from '../firmware/config/load.ts'

/** `tool: message` on stderr and exit (1: the command failed; 2: it was used wrongly). */
export function failer(tool: string): (message: string, code?: number) => never {
  return (message, code = 1) => {
    process.stderr.write(`${tool}: ${message}\n`)
    process.exit(code)
  }
}

/** The box's configuration for a tool: `--config FILE`, else $SG_CONFIG, else the defaults; a bad one exits 2. */
export function toolConfig(tool: string, path: string | undefined): Config {
  try {
    return loadConfigFile(path ?? configPathFrom([], process.env))
  } catch (err) {
    if (err instanceof ConfigError) failer(tool)(`configuration error: ${err.message}`, 2)
    throw err
  }
}
