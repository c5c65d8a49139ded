import type { Server, Socket } from 'node:net'
import { unmapIPv4 } from '../../hal/net/cidr.ts'
import { GatewayError } from '../errors.ts'
import type { Logger } from '../log.ts'

/** Errors that say something about the listener itself, not about one client. */
const LISTENER_FAULTS = new Set(['EADDRINUSE', 'EACCES', 'EMFILE', 'ENFILE', 'ENOMEM'])
/** A client's faults are logged at most this often per address (each is counted). */
const CLIENT_LOG_INTERVAL_MS = 60_000

export interface GuardOptions {
  /** Connections one address may hold open (S3-style limits on the submission service). */
  perAddress: number
  /** Time from connecting to being authenticated; a client that has not made it by then is disconnected. */
  authTimeoutMs: number
  log: Logger
}

/**
 * What one client may cost the submission service (S6 robustness): a cap on
 * the connections one address holds open, counted from the TCP accept —
 * before any TLS handshake — so that idle connections from one host cannot
 * fill `maxClients` for everyone (slow-loris); a deadline for getting from
 * connect to authenticated; and client-caused errors (a failed handshake, a
 * reset) counted and logged as the client's, at most once a minute per
 * address and without a stack, so a scan cannot flood the log.
 */
export class ConnectionGuard {
  readonly #opts: GuardOptions
  readonly #perAddress = new Map<string, number>()
  readonly #deadlines = new Map<string, NodeJS.Timeout>()
  /** Per open connection (address|port): what gives its place back, exactly once. */
  readonly #releases = new Map<string, () => void>()
  readonly #lastLogged = new Map<string, number>()
  /** Counters for status and metrics. */
  readonly counts = { refusedBusyAddress: 0, authTimeouts: 0, clientErrors: {} as Record<string, number> }

  constructor(opts: GuardOptions) {
    this.#opts = opts
  }

  /**
   * Puts the guard in front of a listener's connection handling: a connection
   * over its address's limit never reaches the SMTP server (on a plain port it
   * is told 421 first; before a TLS handshake nothing can be said).
   */
  install(server: Server, plain: boolean): void {
    const handlers = server.listeners('connection') as ((s: Socket) => void)[]
    server.removeAllListeners('connection')
    server.on('connection', (socket: Socket) => {
      const ip = unmapIPv4(socket.remoteAddress ?? '')
      const open = (this.#perAddress.get(ip) ?? 0) + 1
      if (open > this.#opts.perAddress) {
        this.counts.refusedBusyAddress++
        this.#logClient(ip, 'too-many-connections', `more than ${this.#opts.perAddress} connections from one address`)
        socket.on('error', () => {})
        if (plain) socket.end(`421 ${new GatewayError('ECLIENT_TOO_MANY').message}\r\n`)
        else socket.destroy()
        setTimeout(() => socket.destroy(), 1000).unref()
        return
      }
      this.#perAddress.set(ip, open)
      const key = `${ip}|${socket.remotePort}`
      const deadline = setTimeout(() => {
        this.counts.authTimeouts++
        this.#logClient(ip, 'auth-timeout', `not authenticated within ${this.#opts.authTimeoutMs} ms of connecting`)
        socket.destroy()
      }, this.#opts.authTimeoutMs)
      deadline.unref()
      this.#deadlines.set(key, deadline)
      const release = () => {
        if (this.#releases.get(key) !== release) return
        this.#releases.delete(key)
        clearTimeout(this.#deadlines.get(key))
        this.#deadlines.delete(key)
        const n = (this.#perAddress.get(ip) ?? 1) - 1
        if (n > 0) this.#perAddress.set(ip, n)
        else this.#perAddress.delete(ip)
      }
      this.#releases.set(key, release)
      // STARTTLS takes the raw socket's listeners away (smtp-server removes them before the
      // upgrade), so the SMTP session's own close also gives the place back: closed().
      socket.once('close', release)
      for (const h of handlers) h.call(server, socket)
    })
  }

  /** The SMTP session of `address:port` has closed (after a STARTTLS upgrade the raw socket no longer says so). */
  closed(address: string, port: number): void {
    this.#releases.get(`${unmapIPv4(address)}|${port}`)?.()
  }

  /** The client at `address:port` has authenticated (or, from a trusted network, started a transaction): no deadline any more. */
  passed(address: string, port: number): void {
    const key = `${unmapIPv4(address)}|${port}`
    clearTimeout(this.#deadlines.get(key))
    this.#deadlines.delete(key)
  }

  /** An error from the SMTP server: the listener's own at error level, a client's counted and logged as such. */
  error(err: Error & { code?: string; meta?: { remoteAddress?: string }; remoteAddress?: string }): void {
    const ip = err.meta?.remoteAddress ?? err.remoteAddress
    if (!ip && err.code && LISTENER_FAULTS.has(err.code)) {
      this.#opts.log.error({ err }, 'submission listener error')
      return
    }
    const kind = /tls|ssl|handshake|cipher|protocol version/i.test(`${err.code} ${err.message}`)
      ? 'tls'
      : err.code === 'ECONNRESET' || err.code === 'EPIPE'
        ? 'reset'
        : /timeout/i.test(`${err.code} ${err.message}`)
          ? 'timeout'
          : 'other'
    this.#logClient(ip ? unmapIPv4(ip) : 'unknown', kind, `${err.code ?? ''} ${err.message}`.trim().slice(0, 200))
  }

  #logClient(ip: string, kind: string, detail: string): void {
    this.counts.clientErrors[kind] = (this.counts.clientErrors[kind] ?? 0) + 1
    const now = Date.now()
    const key = `${ip}|${kind}`
    if (now - (this.#lastLogged.get(key) ?? -Infinity) < CLIENT_LOG_INTERVAL_MS) return
    this.#lastLogged.set(key, now)
    if (this.#lastLogged.size > 10_000) for (const [k, t] of this.#lastLogged) if (now - t >= CLIENT_LOG_INTERVAL_MS) this.#lastLogged.delete(k)
    this.#opts.log.info(
      { ip, kind, detail, counted: this.counts.clientErrors[kind] },
      'client error (further ones from this address are counted, logged once a minute)',
    )
  }
}
