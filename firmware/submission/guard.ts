import type { AddressInfo, Socket } from 'node:net'
import type { SMTPServer } from 'smtp-server'
import { unmapIPv4 } from '../../hal/net/cidr.ts'
import { ClientErrorLog } from '../client-errors.ts'
import { GatewayError } from '../errors.ts'
import type { Logger } from '../log.ts'

/** Errors that say something about the listener itself, not about one client. */
const LISTENER_FAULTS = new Set(['EADDRINUSE', 'EACCES', 'EMFILE', 'ENFILE', 'ENOMEM'])
/** While a STARTTLS handshake runs, the deadline looks again this often (the handshake has its own timeout). */
const UPGRADE_RECHECK_MS = 250

/** Where a listener listens, once it does (the port resolved when configured as 0). */
export interface Endpoint {
  host: string
  port: number
}

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
 *
 * The guard sees the raw TCP socket first, but it does not own it for long:
 * smtp-server wraps it in a TLS socket (at once on the implicit-TLS port, at
 * STARTTLS on the other) and then hands the connection to an SMTP session.
 * Destroying the raw socket under a TLS wrap tears the wrap down from below,
 * and Node then reads the TLS state of a freed SSL object (#29: one idle
 * connection to port 465 killed the daemon with SIGSEGV). So the deadline
 * ends a connection through whoever owns it at that moment — the SMTP
 * session (a 421 and its own close), or before there is one the TLS socket
 * of the handshake — and touches the raw socket only while nothing wraps it.
 */
export class ConnectionGuard {
  /** Guards `server` (`install`), logs its errors here, and listens on host:port; plain: the STARTTLS listener. */
  listen(server: SMTPServer, host: string, port: number, plain: boolean): Promise<Endpoint> {
    server.on('error', (err) => this.error(err))
    this.install(server, plain)
    // Replies are small writes: without Nagle none waits for the client's delayed ACK.
    server.server.on('connection', (socket: { setNoDelay(on: boolean): void }) => socket.setNoDelay(true))
    return new Promise((resolve, reject) => {
      server.server.once('error', reject)
      server.listen(port, host, () => {
        server.server.off('error', reject)
        const a = server.server.address() as AddressInfo
        resolve({ host: a.address, port: a.port })
      })
    })
  }

  readonly #opts: GuardOptions
  readonly #perAddress = new Map<string, number>()
  readonly #deadlines = new Map<string, NodeJS.Timeout>()
  /** Per open connection (address|port): what gives its place back, exactly once. */
  readonly #releases = new Map<string, () => void>()
  readonly #clients: ClientErrorLog
  /** Counters for status and metrics. */
  readonly counts: { refusedBusyAddress: number; authTimeouts: number; clientErrors: Record<string, number> }

  constructor(opts: GuardOptions) {
    this.#opts = opts
    this.#clients = new ClientErrorLog(opts.log)
    this.counts = { refusedBusyAddress: 0, authTimeouts: 0, clientErrors: this.#clients.counts }
  }

  /**
   * Puts the guard in front of a listener's connection handling: a connection
   * over its address's limit never reaches the SMTP server (on a plain port it
   * is told 421 first; before a TLS handshake nothing can be said).
   */
  install(smtp: SMTPServer, plain: boolean): void {
    const server = smtp.server
    const handlers = server.listeners('connection') as ((s: Socket) => void)[]
    server.removeAllListeners('connection')
    server.on('connection', (socket: Socket) => {
      const ip = unmapIPv4(socket.remoteAddress ?? '')
      const open = (this.#perAddress.get(ip) ?? 0) + 1
      if (open > this.#opts.perAddress) {
        this.counts.refusedBusyAddress++
        this.#clients.note(ip, 'too-many-connections', `more than ${this.#opts.perAddress} connections from one address`)
        // smtp-server never sees this socket, so nothing wraps it: the raw socket is ours to end.
        socket.on('error', () => {})
        if (plain) socket.end(`421 ${new GatewayError('ECLIENT_TOO_MANY').message}\r\n`)
        else socket.destroy()
        setTimeout(() => socket.destroy(), 1000).unref()
        return
      }
      this.#perAddress.set(ip, open)
      const port = socket.remotePort ?? 0
      const key = `${ip}|${port}`
      const expire = () => {
        if (!this.#deadlines.has(key)) return
        if (this.#end(smtp, socket, ip, port) === 'later') {
          this.#deadlines.set(key, setTimeout(expire, UPGRADE_RECHECK_MS).unref())
          return
        }
        this.#deadlines.delete(key)
        this.counts.authTimeouts++
        this.#clients.note(ip, 'auth-timeout', `not authenticated within ${this.#opts.authTimeoutMs} ms of connecting`)
      }
      this.#deadlines.set(key, setTimeout(expire, this.#opts.authTimeoutMs).unref())
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

  /**
   * Ends the connection of `raw` through its owner; 'later' while a STARTTLS
   * handshake runs (its TLS socket is known only to the session, which ends
   * it by its own handshake timeout; the deadline looks again shortly).
   */
  #end(smtp: SMTPServer, raw: Socket, ip: string, port: number): 'done' | 'later' {
    for (const conn of smtp.connections) {
      if (conn.remotePort !== port || unmapIPv4(conn.remoteAddress) !== ip) continue
      if (conn._upgrading) return 'later'
      conn.send(421, new GatewayError('EAUTH_TIMEOUT').message)
      conn.close()
      return 'done'
    }
    // No session yet: on the implicit-TLS port the handshake's TLS socket owns the raw one
    // (smtp-server keeps it in _pendingSockets until the handshake is over).
    const top = smtp._pendingSockets.get(raw)
    if (top && top !== raw) top.destroy()
    else if (!raw.destroyed) raw.destroy()
    return 'done'
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
    this.#clients.error(err)
  }
}
