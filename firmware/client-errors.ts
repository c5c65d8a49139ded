import type { Duplex } from 'node:stream'
import { unmapIPv4 } from '../hal/net/cidr.ts'
import type { Logger } from './log.ts'

/** A client's faults are logged at most this often per address and kind (each is counted). */
export const CLIENT_LOG_INTERVAL_MS = 60_000
/** Addresses remembered for the once-a-interval rule before the old ones are swept. */
const REMEMBERED = 10_000

export type ClientFault = 'tls' | 'reset' | 'timeout' | 'too-many-connections' | 'auth-timeout' | 'busy' | 'other'

const str = (v: unknown): string => (typeof v === 'string' || typeof v === 'number' ? String(v) : '')

/** What kind of client fault an error from a listener is (a failed handshake, a reset, a timeout, …). */
export function faultOf(err: { code?: unknown; message?: unknown }): ClientFault {
  const text = `${str(err.code)} ${str(err.message)}`
  if (/tls|ssl|handshake|cipher|protocol version|wrong version number|alert/i.test(text)) return 'tls'
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.code === 'ECONNABORTED') return 'reset'
  if (/timeout|timed out/i.test(text)) return 'timeout'
  return 'other'
}

/**
 * What every listener does with a client's faults (S11, S12; DESIGN "every
 * listener survives every client"): count each one, and log it at info level
 * at most once a minute per address and kind, without a stack — so a port
 * scan, a broken client or a flood of half handshakes from the internet costs
 * one line per address, never one line per attempt. The submission guard, the
 * return path, the admin page and the tracking listener share it.
 */
export class ClientErrorLog {
  readonly #log: Logger
  readonly #intervalMs: number
  readonly #lastLogged = new Map<string, number>()
  readonly #now: () => number
  /** smtp-server reports one failed handshake through two events with the same error: counted once. */
  readonly #seen = new WeakSet<object>()
  /** Faults by kind since start (status, metrics, tests). */
  readonly counts: Record<string, number> = {}

  constructor(log: Logger, opts: { intervalMs?: number; now?: () => number } = {}) {
    this.#log = log
    this.#intervalMs = opts.intervalMs ?? CLIENT_LOG_INTERVAL_MS
    this.#now = opts.now ?? Date.now
  }

  /** An error a listener reported about a client (its address from the error or given). */
  error(err: Error & { code?: unknown; meta?: { remoteAddress?: string }; remoteAddress?: string }, address?: string): void {
    if (this.#seen.has(err)) return
    this.#seen.add(err)
    const ip = address ?? err.meta?.remoteAddress ?? err.remoteAddress
    this.note(ip ? unmapIPv4(ip) : 'unknown', faultOf(err), `${str(err.code)} ${err.message}`.trim().slice(0, 200))
  }

  /** Counts one fault of `kind` by the client at `ip`; logs it if this address has not been logged for this kind lately. */
  note(ip: string, kind: ClientFault, detail: string): void {
    this.counts[kind] = (this.counts[kind] ?? 0) + 1
    const now = this.#now()
    const key = `${ip}|${kind}`
    if (now - (this.#lastLogged.get(key) ?? -Infinity) < this.#intervalMs) return
    this.#lastLogged.set(key, now)
    if (this.#lastLogged.size > REMEMBERED) for (const [k, t] of this.#lastLogged) if (now - t >= this.#intervalMs) this.#lastLogged.delete(k)
    this.#log.info({ ip, kind, detail, counted: this.counts[kind] }, 'client error (further ones from this address are counted, logged once a minute)')
  }
}

const HTTP_ANSWERS: Record<string, string> = { ERR_HTTP_REQUEST_TIMEOUT: '408 Request Timeout', HPE_HEADER_OVERFLOW: '431 Request Header Fields Too Large' }

/**
 * An HTTP server's `clientError` handler (the admin page's, the tracking
 * listener's): the fault counted and logged through `clients`, a bare status
 * line to a client that can still read one, and the socket — the top one,
 * TLS included, which Node hands here — destroyed.
 */
export function httpClientErrorHandler(clients: ClientErrorLog): (err: Error & { code?: string }, socket: Duplex & { remoteAddress?: string }) => void {
  return (err, socket) => {
    clients.error(err, socket.remoteAddress ?? 'unknown')
    if (err.code !== 'ECONNRESET' && !socket.destroyed && socket.writable)
      socket.write(`HTTP/1.1 ${HTTP_ANSWERS[err.code ?? ''] ?? '400 Bad Request'}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`)
    socket.destroy()
  }
}
