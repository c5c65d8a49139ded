import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Component } from '../component.ts'
import type { Config } from '../config/load.ts'
import type { EventSink } from '../events.ts'
import type { Logger } from '../log.ts'
import { ClientErrorLog, httpClientErrorHandler } from '../client-errors.ts'
import { splitHostPort } from '../config/sections/fields.ts'
import { MAX_TOKEN, type TrackingRef, type TrackingTokens } from './tokens.ts'

export type AgentClass = 'client' | 'browser' | 'proxy' | 'scanner' | 'unknown'

// Substrings of User-Agent headers, lower-cased, checked in this order.
const PROXIES = ['googleimageproxy', 'ggpht.com', 'yahoomailproxy', 'apple-mail-privacy', 'mail.ru image proxy', 'feedfetcher']
const SCANNERS = [
  'bot',
  'spider',
  'crawl',
  'scan',
  'curl/',
  'wget/',
  'python-',
  'go-http-client',
  'java/',
  'okhttp',
  'headlesschrome',
  'barracuda',
  'mimecast',
  'proofpoint',
  'urldefense',
  'symantec',
  'trend micro',
  'forcepoint',
  'fireeye',
  'microsoft office existence discovery',
  'ms-office',
  'skypeuripreview',
  'preview',
]
const CLIENTS = ['thunderbird', 'outlook', 'microsoft office', 'windows-live-mail', 'airmail', 'spark', 'lotus-notes', 'mail/']
const BROWSERS = ['firefox/', 'chrome/', 'safari/', 'edg/', 'opr/', 'samsungbrowser/']

/**
 * What fetched a tracking URL, from its User-Agent (M9): an image proxy that
 * loads every image when the mail arrives (`proxy`: no person opened
 * anything), a link scanner or bot (`scanner`: counted in the totals of
 * fetches, never as an open or a click), a mail client (`client`), a browser
 * (`browser`; also Apple Mail and mobile webviews, which send a browser's
 * string without "Safari/" — those are `client`), or `unknown`.
 */
export function agentClass(userAgent: string | undefined, method = 'GET'): AgentClass {
  if (method === 'HEAD') return 'scanner' // a person's click is a GET
  const ua = (userAgent ?? '').slice(0, 512).toLowerCase()
  if (!ua) return 'unknown'
  if (PROXIES.some((p) => ua.includes(p))) return 'proxy'
  if (SCANNERS.some((p) => ua.includes(p))) return 'scanner'
  if (CLIENTS.some((p) => ua.includes(p))) return 'client'
  if (BROWSERS.some((p) => ua.includes(p))) return 'browser'
  // A WebKit string without a browser's token: Apple Mail, iOS Mail, an app's web view.
  if (ua.includes('applewebkit/')) return 'client'
  return 'unknown'
}

/** A 1×1 transparent GIF. */
const PIXEL = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64')
/** Refusals are counted and reported at most this often (a flood of forged tokens must not flood the trail). */
const REFUSAL_REPORT_MS = 60_000

/**
 * The tracking listener (M9): plain HTTP behind the firm's reverse proxy.
 * `GET /o/<token>` answers the image and records an open; `GET /c/<token>`
 * records a click and redirects to the link sealed in the token — nowhere
 * else, whatever the query string or path says. Anything else, and any token
 * that does not open (malformed, forged, for the other kind), gets a bare
 * 404; refusals are counted and reported once a minute, never with details
 * to the client.
 */
export class TrackingListener implements Component {
  readonly name = 'tracking'
  readonly #config: Config
  readonly #tokens: TrackingTokens
  readonly #events: EventSink
  readonly #log: Logger
  #server: Server | undefined
  readonly #refused = { malformed: 0, forged: 0 }
  readonly #onRead: (id: string, evidence: 'open' | 'confirm-link') => Promise<unknown>
  #refusalTimer: NodeJS.Timeout | undefined
  /** Clients' faults (broken or slow requests): counted, logged once a minute per address. */
  readonly clients: ClientErrorLog

  /** `onRead`: told of a person's open and of a confirmation (M11: the read of a class that counts them). */
  constructor(deps: {
    config: Config
    tokens: TrackingTokens
    events: EventSink
    log: Logger
    onRead?: (id: string, evidence: 'open' | 'confirm-link') => Promise<unknown>
  }) {
    this.#config = deps.config
    this.#tokens = deps.tokens
    this.#events = deps.events
    this.#log = deps.log.child({ component: 'tracking' })
    this.clients = new ClientErrorLog(this.#log)
    this.#onRead = deps.onRead ?? (() => Promise.resolve())
  }

  /** Where it listens (after start), e.g. for tests that asked for port 0. */
  get address(): AddressInfo | undefined {
    return (this.#server?.address() as AddressInfo | null) ?? undefined
  }

  async start(): Promise<void> {
    const t = this.#config.reports.tracking
    if (!t.baseUrl || !this.#config.reports.enabled) return
    const { host, port } = splitHostPort(t.listen)
    // The internet faces this port (#29): a connection that sends nothing, half a request or a
    // request slowly is closed by these deadlines, and its faults are counted, not logged each.
    const timeout = t.requestTimeoutMs
    const half = Math.min(5_000, Math.floor(timeout / 2))
    const server = createServer(
      { requestTimeout: timeout, headersTimeout: half, keepAliveTimeout: half, connectionsCheckingInterval: half, maxHeaderSize: 8192 },
      (req, res) => {
        void this.#handle(req, res).catch((err: Error) => {
          this.#log.warn({ err: err.message }, 'tracking request failed')
          if (!res.headersSent) res.writeHead(503, { 'cache-control': 'no-store' })
          res.end()
        })
      },
    )
    server.setTimeout(timeout)
    server.on('clientError', httpClientErrorHandler(this.clients))
    server.maxConnections = 2000
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => resolve())
    })
    this.#server = server
    this.#refusalTimer = setInterval(() => this.#reportRefusals(), REFUSAL_REPORT_MS)
    this.#refusalTimer.unref()
    this.#log.info({ listen: t.listen, address: this.address, baseUrl: t.baseUrl }, 'tracking listener ready')
  }

  async stop(): Promise<void> {
    clearInterval(this.#refusalTimer)
    this.#reportRefusals()
    const s = this.#server
    this.#server = undefined
    if (!s) return
    s.closeAllConnections()
    await new Promise((r) => s.close(r))
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? ''
    const path = (req.url ?? '').split('?', 1)[0]!
    const kind = path.startsWith('/o/') ? 'open' : path.startsWith('/c/') ? 'click' : path.startsWith('/r/') ? 'confirm' : undefined
    const allowed = method === 'GET' || method === 'HEAD' || (method === 'POST' && kind === 'confirm')
    if (!allowed || !kind) return this.#notFound(res, undefined)
    if (path.length > MAX_TOKEN + 3) return this.#notFound(res, 'malformed')
    const ref = await this.#tokens.open(path.slice(3))
    if (ref === 'malformed' || ref === 'forged') return this.#notFound(res, ref)
    if (ref.kind !== kind) return this.#notFound(res, 'forged')
    const agent = agentClass(req.headers['user-agent'], method)
    if (ref.kind === 'confirm') return this.#confirm(req, res, ref, agent)
    if (ref.kind === 'open') {
      this.#events.emit({ type: 'tracking.open', id: ref.id, recipient: ref.recipient, agent })
      // M11: a person's open is the read of a class that counts opens (never an image proxy's or a scanner's).
      if (agent !== 'proxy' && agent !== 'scanner') this.#read(ref.id, 'open')
      res.writeHead(200, {
        'content-type': 'image/gif',
        'content-length': PIXEL.length,
        'cache-control': 'no-store, no-cache, private, max-age=0',
        'referrer-policy': 'no-referrer',
      })
      res.end(method === 'HEAD' ? undefined : PIXEL)
      return
    }
    this.#events.emit({ type: 'tracking.click', id: ref.id, recipient: ref.recipient, link: ref.link ?? 0, agent })
    // The link as sealed at sending; only http(s) links were ever sealed.
    res.writeHead(302, { location: ref.url ?? '', 'cache-control': 'no-store', 'referrer-policy': 'no-referrer', 'content-length': 0 })
    res.end()
  }

  /**
   * M11: the confirmation link. GET shows a page with a button; only its POST confirms, so a
   * link scanner that follows every link on arrival confirms nothing.
   */
  async #confirm(req: IncomingMessage, res: ServerResponse, ref: TrackingRef, agent: AgentClass): Promise<void> {
    const headers = { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'referrer-policy': 'no-referrer', 'x-frame-options': 'DENY' }
    if (req.method !== 'POST') {
      const page =
        '<!doctype html><html lang="zh-Hant"><meta charset="utf-8"><title>確認收到對帳單</title>' +
        '<form method="post"><p>請按下方按鈕，確認您已收到並閱讀本月對帳單。<br>Press the button to confirm that you received and read your statement.</p>' +
        '<button type="submit">確認收到 / Confirm</button></form></html>'
      res.writeHead(200, { ...headers, 'content-length': Buffer.byteLength(page) })
      res.end(req.method === 'HEAD' ? undefined : page)
      return
    }
    req.resume()
    if (agent !== 'scanner') {
      this.#events.emit({ type: 'tracking.confirm', id: ref.id, recipient: ref.recipient, agent })
      await this.#events.durable?.()
      this.#read(ref.id, 'confirm-link')
    }
    const page =
      '<!doctype html><html lang="zh-Hant"><meta charset="utf-8"><title>已確認</title><p>已確認收到，謝謝。<br>Thank you: your receipt is confirmed.</p></html>'
    res.writeHead(200, { ...headers, 'content-length': Buffer.byteLength(page) })
    res.end(page)
  }

  #read(id: string, evidence: 'open' | 'confirm-link'): void {
    void this.#onRead(id, evidence).catch((err: unknown) => this.#log.error({ err, id }, 'a read could not end its statement'))
  }

  #notFound(res: ServerResponse, reason: 'malformed' | 'forged' | undefined): void {
    if (reason) this.#refused[reason]++
    res.writeHead(404, { 'content-type': 'text/plain', 'cache-control': 'no-store', 'content-length': 10 })
    res.end('not found\n')
  }

  #reportRefusals(): void {
    for (const reason of ['malformed', 'forged'] as const) {
      const count = this.#refused[reason]
      if (count === 0) continue
      this.#refused[reason] = 0
      this.#log.warn({ reason, count }, 'tracking tokens refused')
      this.#events.emit({ type: 'tracking.refused', reason: reason === 'malformed' ? 'unknown-token' : 'forged-token', count })
    }
  }
}
