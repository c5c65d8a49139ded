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
