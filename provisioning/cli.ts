import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { CONFIG_ENV, ConfigError, configPathFrom, parseConfig, readConfigFile, type Config } from '../firmware/config/load.ts'
import { startingConfig } from '../firmware/config/versions.ts'

/** The development box's config, written by first boot (`npm start`). */
export const DEV_CONFIG = './var/config.json'

/** `tool: message` on stderr and exit (1: the command failed; 2: it was used wrongly). */
/** A queue id (firmware/spool/ids.ts): 12 base64url characters, so it may begin with "-". */
const QUEUE_ID = /^[A-Za-z0-9_-]{12}$/

/**
 * The arguments for `parseArgs` with every queue id that begins with "-" made unambiguous: the
 * value of a string option as `--opt=ID`, a positional behind "--" (`npm run queue -- show -Bq3…`
 * failed with ERR_PARSE_ARGS_UNKNOWN_OPTION for one id in 64). The other positionals keep their order.
 */
export function idsAsPositionals(argv: readonly string[], options: Record<string, { type: 'string' | 'boolean' }> = {}): string[] {
  const out: string[] = []
  const dashIds: string[] = []
  for (const a of argv) {
    if (!(a.startsWith('-') && !a.startsWith('--') && QUEUE_ID.test(a))) out.push(a)
    else if (out.at(-1)?.startsWith('--') && options[out.at(-1)!.slice(2)]?.type === 'string') out.push(`${out.pop()!}=${a}`)
    else dashIds.push(a)
  }
  return dashIds.length ? [...out, '--', ...dashIds] : out
}

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

/**
 * A reader that stops reading (`npm run reports -- paper --format csv | head -1`)
 * ends the tool quietly, exit 0, as Unix tools do — not with an EPIPE stack.
 */
export function quietWhenStdoutCloses(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0)
    throw err
  })
}

/** Columns of text as a terminal shows them: a Chinese or Japanese character takes two cells. */
export function displayWidth(s: string): number {
  let w = 0
  for (const ch of s) {
    const c = ch.codePointAt(0)!
    w +=
      (c >= 0x1100 && c <= 0x115f) ||
      (c >= 0x2e80 && c <= 0xa4cf) ||
      (c >= 0xac00 && c <= 0xd7a3) ||
      (c >= 0xf900 && c <= 0xfaff) ||
      (c >= 0xfe30 && c <= 0xfe4f) ||
      (c >= 0xff00 && c <= 0xff60) ||
      (c >= 0xffe0 && c <= 0xffe6) ||
      c >= 0x20000
        ? 2
        : 1
  }
  return w
}

/**
 * A plain-text table: every column starts where its header starts (text left,
 * numbers right within it), widths as a terminal shows the characters.
 */
export function textTable(rows: readonly Record<string, string>[], columns: readonly string[], numeric: ReadonlySet<string> = new Set()): string {
  const width = columns.map((c) => Math.max(displayWidth(c), ...rows.map((r) => displayWidth(r[c] ?? ''))))
  const pad = (s: string, i: number) => {
    const room = ' '.repeat(width[i]! - displayWidth(s))
    return numeric.has(columns[i]!) ? room + s : s + room
  }
  const line = (cells: string[]) => cells.map(pad).join('  ').trimEnd()
  return [line([...columns]), ...rows.map((r) => line(columns.map((c) => r[c] ?? '')))].join('\n')
}
