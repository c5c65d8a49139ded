import { readFileSync } from 'node:fs'
import { createSecureContext, getCACertificates, type SecureContext } from 'node:tls'
import type { ByteRateLimiter } from '../../hal/net/throttle.ts'
import type { Config } from '../config/load.ts'
import { SmtpClient, SmtpError } from './client.ts'
import type { Egress } from './egress.ts'
import type { Hop } from './routes.ts'

/**
 * Counting semaphore for connection limits. A waiter gets either a free slot
 * (undefined) or an open connection handed over with its slot.
 */
class Slots<T = never> {
  #free: number
  #waiting: ((handed: T | undefined) => void)[] = []
  constructor(n: number) {
    this.#free = n
  }
  take(): Promise<T | undefined> {
    if (this.#free > 0) {
      this.#free--
      return Promise.resolve(undefined)
    }
    return new Promise((r) => this.#waiting.push(r))
  }
  give(): void {
    const next = this.#waiting.shift()
    if (next) next(undefined)
    else this.#free++
  }
  /** Passes an open connection, and the slot it holds, to the next waiter; false if nobody waits. */
  handOver(item: T): boolean {
    const next = this.#waiting.shift()
    if (!next) return false
    next(item)
    return true
  }
}

/**
 * Outbound SMTP connections (M2, M3, S1): at most `delivery.maxConnections`
 * in all and `perDestinationConnections` to one destination, reused for up
 * to `messagesPerConnection` mails (a connection freed while another mail
 * waits for that destination is handed straight over), closed after a few
 * idle seconds. Every connection verifies TLS against the trust store below
 * and is shaped by the limiters the engine gives.
 */
export class ConnectionPool {
  #config: Config['delivery']
  readonly #hostname: string
  readonly #global: Slots
  readonly #perDestination = new Map<string, Slots<SmtpClient>>()
  readonly #idle = new Map<string, SmtpClient[]>()
  /** Every connection made (closed ones are dropped as new ones are made), for closing at shutdown. */
  readonly #clients = new Set<SmtpClient>()
  readonly #trust: SecureContext
  /** Each connection's own share of `messagesPerConnection` (see {@link ConnectionPool.limitFor}). */
  readonly #limits = new WeakMap<SmtpClient, number>()
  #opened = 0
  #stopping = false

  constructor(config: Config) {
    this.#config = config.delivery
    this.#hostname = config.submission.hostname
    this.#global = new Slots(config.delivery.maxConnections)
    // Verified TLS (S1) trusts the operating system's store, where IT adds the firm's
    // own CAs, plus an optional file; Node's bundled roots if the system has none.
    const system = getCACertificates('system')
    const ca = [...(system.length ? system : getCACertificates('bundled')), ...(this.#config.tlsCaFile ? [readFileSync(this.#config.tlsCaFile, 'utf8')] : [])]
    this.#trust = createSecureContext({ ca, minVersion: 'TLSv1.2' })
  }

  /**
   * S7: timeouts and messages per connection from a configuration approved on the
   * admin page, for the next connection; the connection limits and the CA file stay
   * as they were at start.
   */
  reconfigure(config: Config): void {
    this.#config = config.delivery
  }

  /** The box's own name for the internal route (audit copies), which uses no egress address (M7). */
  get internalEgress(): Egress {
    return { address: '', ehloName: this.#hostname, weight: 1 }
  }

  /** No new connection from now on; connections handed back are closed. */
  beginStop(): void {
    this.#stopping = true
  }

  /** Connections busy right now (for closing them when the shutdown grace is over). */
  busy(): SmtpClient[] {
    return [...this.#clients].filter((c) => !c.closed)
  }

  /**
   * A stop: waits for the attempts in progress (`tasks`) until `deadline`; then closes the
   * connections still busy — those attempts end deferred and are retried after the restart —
   * and waits for them to end. `overdue` is told how many connections it closed.
   */
  async settle(tasks: Promise<unknown>, deadline: number, overdue: (connections: number) => void): Promise<void> {
    let grace: NodeJS.Timeout | undefined
    const late = await Promise.race([
      tasks.then(() => false),
      new Promise<boolean>((r) => (grace = setTimeout(() => r(true), Math.max(0, deadline - Date.now())))),
    ])
    clearTimeout(grace)
    if (late) {
      const busy = this.busy()
      overdue(busy.length)
      for (const c of busy) c.close()
      await tasks
    }
  }

  async quitIdle(): Promise<void> {
    for (const list of this.#idle.values()) for (const c of list) await c.quit()
    this.#idle.clear()
  }

  /** An idle connection to `hop` from `egress`, or a new one once the limits allow it. */
  async acquire(hop: Hop, egress: Egress, limiters: readonly ByteRateLimiter[]): Promise<SmtpClient> {
    this.#noNewAttempts()
    const idle = this.#idle.get(key(hop, egress))
    const reuse = idle?.pop()
    if (reuse && !reuse.closed) return reuse
    const dest = `${hop.address}:${hop.port}`
    let slots = this.#perDestination.get(dest)
    if (!slots) this.#perDestination.set(dest, (slots = new Slots<SmtpClient>(this.#config.perDestinationConnections)))
    const handed = await slots.take()
    if (handed && !handed.closed) {
      if (this.#stopping) {
        handed.close()
        this.forget(hop)
        this.#noNewAttempts()
      }
      return handed
    }
    if (handed) {
      // Handed over but closed meanwhile: its slots are ours to use for a new connection.
      this.#global.give()
    }
    if (this.#stopping) {
      slots.give()
      this.#noNewAttempts()
    }
    await this.#global.take()
    if (this.#stopping) {
      slots.give()
      this.#global.give()
      this.#noNewAttempts()
    }
    const t = this.#config.timeouts
    for (const c of this.#clients) if (c.closed) this.#clients.delete(c)
    const client = new SmtpClient({
      host: hop.address,
      servername: hop.name,
      port: hop.port,
      localAddress: egress.address || undefined,
      ehloName: egress.ehloName,
      tls: hop.tls,
      trust: this.#trust,
      limiters,
      timeouts: { connect: t.connectMs, greeting: t.greetingMs, command: t.commandMs, data: t.dataMs },
    })
    this.#clients.add(client)
    this.#limits.set(client, ConnectionPool.limitFor(this.#config.messagesPerConnection, this.#opened++))
    try {
      await client.connect()
    } catch (err) {
      client.close()
      slots.give()
      this.#global.give()
      throw err
    }
    return client
  }

  /**
   * How many mails the `n`-th connection made carries before it is closed: `messagesPerConnection`,
   * or up to three eighths fewer, in turn (#35). Connections opened together would otherwise all
   * close together, and the budget would stand idle while every one of them connects again (a
   * receiver saw a 10 % dip in one second of a 10 Mbit/s budget, each time 400 mails had gone
   * over four connections).
   */
  static limitFor(messagesPerConnection: number, n: number): number {
    return messagesPerConnection - (n % 4) * Math.floor(messagesPerConnection / 8)
  }

  /** A connection whose mail went through: reused, handed to a waiter, or closed. */
  release(hop: Hop, egress: Egress, client: SmtpClient): void {
    if (client.sent >= (this.#limits.get(client) ?? this.#config.messagesPerConnection) || this.#stopping) {
      void client.quit()
      this.forget(hop)
      return
    }
    // Someone is waiting for this destination: give them the open connection.
    if (this.#perDestination.get(`${hop.address}:${hop.port}`)?.handOver(client)) return
    const k = key(hop, egress)
    const list = this.#idle.get(k) ?? []
    list.push(client)
    this.#idle.set(k, list)
    // An idle connection is closed after a few seconds with nothing to send.
    setTimeout(() => {
      const l = this.#idle.get(k)
      const i = l?.indexOf(client) ?? -1
      if (l && i >= 0) {
        l.splice(i, 1)
        void client.quit()
        this.forget(hop)
      }
    }, 5000).unref()
  }

  /** Gives back the slots of a connection that is gone (closed after an error). */
  forget(hop: Hop): void {
    this.#perDestination.get(`${hop.address}:${hop.port}`)?.give()
    this.#global.give()
  }

  /**
   * Once the box is stopping no new attempt starts: a mail still waiting for a connection
   * slot (behind a receiver that does not answer) stays queued for after the restart instead
   * of opening another connection that could take the full command timeout.
   */
  #noNewAttempts(): void {
    if (this.#stopping) throw new SmtpError('connect', 'the box is stopping; the mail is delivered after the restart', undefined, true)
  }
}

const key = (hop: Hop, egress: Egress) => `${hop.address}:${hop.port}|${egress.address}|${hop.tls}`
