import { mkdirSync } from 'node:fs'
import { buildBox, startBanner } from './box.ts'
import { ConfigError } from './config/load.ts'
import { startingFrom, type Starting } from './config/start.ts'
import { ConfigTamperError } from './config/versions.ts'
import { boxRunning } from './control/server.ts'
import { stopOnSignals } from './daemon.ts'
import { createLogger } from './log.ts'
import { ServiceNotifier } from './notify.ts'
import { missingDaemonEnv } from './runtime.ts'

/** sysexits.h EX_CONFIG: systemd and IT scripts can tell a bad config from a crash. */
const EX_CONFIG = 78
/** sysexits.h EX_TEMPFAIL: try again later (another box holds the data directory). */
const EX_TEMPFAIL = 75
const REQUIRED_NODE_MAJOR = 24

/**
 * The daemon: load and validate the config, build the box (box.ts), start it, and on
 * SIGTERM/SIGINT stop accepting, finish in-flight transactions and exit 0.
 */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<void> {
  if (Number(process.versions.node.split('.')[0]) !== REQUIRED_NODE_MAJOR)
    fail(1, `needs Node ${REQUIRED_NODE_MAJOR} LTS (the project's pinned runtime), running ${process.version}; start it with npm start`)
  let starting: Starting
  try {
    starting = startingFrom(argv, env)
  } catch (err) {
    if (err instanceof ConfigError) fail(EX_CONFIG, `configuration error: ${err.message}`)
    throw err
  }
  const { config } = starting
  const log = createLogger(config.log.level)
  const missing = missingDaemonEnv(env)
  if (missing.length)
    log.warn(
      { missing },
      'started without the memory settings npm start and the systemd unit give: under load the process keeps freed mail buffers (firmware/runtime.ts)',
    )
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 })
  // Two boxes on one data directory would write the same spool and audit trail.
  if (await boxRunning(config)) fail(EX_TEMPFAIL, `${config.dataDir} is in use by a running box (or, for a moment, an admin tool writing its audit trail)`)

  const box = buildBox(config, { log, starting, env })
  // systemd (Type=notify): READY once everything listens, watchdog pings from the event loop, STOPPING at a stop.
  const notifier = new ServiceNotifier({ env, log })
  const stop = stopOnSignals(box.daemon, log, () => notifier.stopping())
  box.stops.on('stop', stop)
  try {
    await box.daemon.start()
  } catch (err) {
    log.flush()
    // The log has it as JSON; a person at the console reads it here.
    process.stderr.write(`statement-gateway: not started: ${(err as Error).message}\n`)
    process.exitCode = err instanceof ConfigTamperError ? EX_CONFIG : 1
    return
  }
  // What the start itself held up (loading, opening the spool) is not a stall in service.
  box.loopDelay.reset()
  log.info({ dataDir: config.dataDir, pid: process.pid }, 'statement gateway started')
  const { starttls, implicitTls } = box.submission.endpoints
  notifier.ready(`submission on ${starttls.host}:${starttls.port} and ${implicitTls.port}; ${box.spool.stats().total} queued`)
  process.stderr.write(startBanner(box))
}

function fail(code: number, message: string): never {
  process.stderr.write(`statement-gateway: ${message}\n`)
  process.exit(code)
}

if (import.meta.main) {
  await main(process.argv.slice(2), process.env)
}
