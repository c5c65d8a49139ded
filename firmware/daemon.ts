import type { Component } from './component.ts'
import type { Logger } from './log.ts'

/** Starts components in order, stops them in reverse; a failed start unwinds what started. */
export class Daemon {
  readonly #components: readonly Component[]
  readonly #log: Logger
  readonly #started: Component[] = []

  constructor(components: readonly Component[], log: Logger) {
    this.#components = components
    this.#log = log
  }

  async start(): Promise<void> {
    for (const c of this.#components) {
      try {
        await c.start()
      } catch (err) {
        this.#log.fatal({ err, component: c.name }, 'component failed to start')
        await this.stop()
        throw err
      }
      this.#started.push(c)
    }
  }

  async stop(): Promise<void> {
    for (const c of [...this.#started].reverse()) {
      try {
        c.beginStop?.()
      } catch (err) {
        this.#log.error({ err, component: c.name }, 'component failed to begin stopping')
      }
    }
    while (this.#started.length > 0) {
      const c = this.#started.pop()!
      try {
        await c.stop()
      } catch (err) {
        this.#log.error({ err, component: c.name }, 'component failed to stop cleanly')
      }
    }
  }
}

/**
 * SIGTERM/SIGINT stop the daemon gracefully (a second one forces exit 1); returns the same
 * stop for other callers, with their exit code (the admin page's restart). `onStop` runs
 * first (systemd's STOPPING=1).
 */
export function stopOnSignals(daemon: Daemon, log: Logger, onStop: () => void): (why: string, code: number) => void {
  let stopping = false
  const stop = (why: string, code: number) => {
    if (stopping) {
      log.warn({ why }, 'second stop: forcing exit')
      log.flush()
      process.exit(1)
    }
    stopping = true
    onStop()
    log.info({ why }, 'stopping: no new connections, finishing transactions in flight')
    daemon.stop().then(
      () => {
        log.info({ exitCode: code }, 'stopped')
        log.flush(() => process.exit(code))
      },
      (err: unknown) => {
        log.error({ err }, 'stop failed')
        log.flush(() => process.exit(1))
      },
    )
  }
  process.on('SIGTERM', (signal) => stop(signal, 0))
  process.on('SIGINT', (signal) => stop(signal, 0))
  return stop
}
