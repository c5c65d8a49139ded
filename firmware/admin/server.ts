import { randomBytes, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { TlsOptions } from 'node:tls'
import cookie from '@fastify/cookie'
import csrf from '@fastify/csrf-protection'
import formbody from '@fastify/formbody'
import helmet from '@fastify/helmet'
import rateLimit from '@fastify/rate-limit'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { AddressSet } from '../../hal/net/cidr.ts'
import type { Component } from '../component.ts'
import type { Config } from '../config/load.ts'
import type { Logger } from '../log.ts'
import { ClientErrorLog, httpClientErrorHandler } from '../client-errors.ts'
import { loadTlsMaterial, serverTlsOptions } from '../submission/tls.ts'
import { splitHostPort } from '../config/sections/fields.ts'
import { boxError } from '../box-errors.ts'
import type { Role } from './accounts.ts'
import { Html } from './html.ts'
import { forbiddenPage, layout, loginPage, type Viewer } from './pages.ts'
import { registerConfigRoutes } from './config-page.ts'
import { registerMaintenanceRoutes } from './maintenance.ts'
import { registerResetRoutes } from './reset-page.ts'
import { registerUpdateRoutes } from './update-page.ts'
import { registerQueueRoutes } from './queue-page.ts'
import { registerRecordRoutes } from './records.ts'
import { registerUnmatchedRoutes } from './unmatched-page.ts'
import { registerRoutes } from './routes.ts'
import { registerUserRoutes } from './users-page.ts'
import { AccountProposals } from './account-proposals.ts'
import type { AdminDeps, Routes } from './types.ts'
import { COOKIE_OPTIONS, SESSION_COOKIE, Sessions, type Session } from './sessions.ts'

const CSRF_COOKIE = '__Host-sg-csrf'

declare module 'fastify' {
  interface FastifyRequest {
    session: Session | undefined
  }
}

/**
 * The local admin page (S3–S6, S8, S11): HTTPS only on the management
 * address, TLS 1.2+ with ECDHE suites as submission, a client allowlist,
 * server-side sessions, CSRF tokens on every form, CSP without inline
 * script, and every action an audit event. fastify with its official
 * helmet, rate-limit, CSRF, cookie and form plugins.
 */
export class AdminServer implements Component {
  readonly name = 'admin'
  readonly #d: AdminDeps
  readonly #log: Logger
  readonly sessions: Sessions
  /** #31: changes to accounts waiting for a second administrator. */
  readonly accountProposals: AccountProposals
  #app: FastifyInstance | undefined
  #address: { host: string; port: number } | undefined
  /** Browsers' and scanners' faults (failed handshakes, broken requests): counted, logged once a minute per address. */
  readonly clients: ClientErrorLog

  constructor(deps: AdminDeps) {
    this.#d = deps
    this.#log = deps.log.child({ component: 'admin' })
    this.clients = new ClientErrorLog(this.#log)
    const a = deps.config.admin
    this.sessions = new Sessions({ clock: deps.clock, idleMinutes: a.sessionIdleMinutes, maxHours: a.sessionMaxHours })
    this.accountProposals = new AccountProposals({
      dataDir: deps.config.dataDir,
      accounts: deps.accounts,
      clock: deps.clock,
      events: deps.events,
      expiryHours: a.proposalExpiryHours,
    })
  }

  get address(): { host: string; port: number } | undefined {
    return this.#address
  }

  /** The page's address for people: `https://host:port/`. */
  get url(): string | undefined {
    const a = this.#address
    return a && `https://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}/`
  }

  async start(): Promise<void> {
    const a = this.#d.config.admin
    if (!a.enabled) return
    const app = await this.build()
    const { host, port } = splitHostPort(a.listen)
    await app.listen({ host, port })
    const addr = app.server.address()
    if (addr && typeof addr === 'object') this.#address = { host, port: addr.port }
    this.#app = app
    this.#d.metrics.start()
    void this.#d.system.refresh()
    this.#log.info({ url: this.url }, 'admin page listening')
  }

  async stop(): Promise<void> {
    this.#d.metrics.stop()
    const app = this.#app
    this.#app = undefined
    await app?.close()
  }

  /** The fastify instance with every route, not yet listening (start() listens). */
  async build(): Promise<FastifyInstance> {
    const d = this.#d
    const a = d.config.admin
    const allow = new AddressSet(a.allowFrom)
    const app = Fastify({
      // A half-sent TLS hello is cut off as an idle request is (Node's default waits 120 s), and a
      // request whose body stops coming is checked for its deadline often enough to end near it
      // (Node looks every 30 s by default).
      https: { ...d.tls(), handshakeTimeout: a.requestTimeoutMs, connectionsCheckingInterval: Math.min(5_000, Math.ceil(a.requestTimeoutMs / 2)) },
      logger: false,
      trustProxy: false,
      bodyLimit: 64 * 1024,
      connectionTimeout: a.requestTimeoutMs,
      requestTimeout: a.requestTimeoutMs,
      // fastify's default keeps an answered connection 72 s for the next request, also one whose
      // body never came (a refused login): Node's 5 s, or less with a shorter deadline.
      keepAliveTimeout: Math.min(5_000, a.requestTimeoutMs),
      return503OnClosing: true,
      clientErrorHandler: httpClientErrorHandler(this.clients),
    })
    app.server.on('tlsClientError', (err: Error, socket: { remoteAddress?: string }) => this.clients.error(err, socket.remoteAddress ?? 'unknown'))
    // S8: only the configured management clients get as far as a page.
    app.addHook('onRequest', async (req, reply) => {
      if (!allow.has(req.socket.remoteAddress ?? '')) return reply.code(403).type('text/plain').send('not allowed from this address\n')
    })
    await app.register(helmet, SECURITY_HEADERS)
    await app.register(rateLimit, { global: false })
    await app.register(cookie)
    await app.register(formbody)
    await app.register(csrf, {
      sessionPlugin: '@fastify/cookie',
      cookieKey: CSRF_COOKIE,
      cookieOpts: COOKIE_OPTIONS,
      // The token is bound to the session: one from before a login is refused after it.
      getUserInfo: (req: FastifyRequest) => req.session?.id ?? 'none',
      csrfOpts: { hmacKey: randomBytes(32) },
    })
    app.decorateRequest('session', undefined)
    app.addHook('onRequest', async (req, reply) => {
      req.session = this.sessions.get(req.cookies[SESSION_COOKIE])
      // Pages hold customer metadata: never kept by the browser or a proxy.
      void reply.header('cache-control', 'no-store')
    })
    // S4: every form is CSRF-checked, whoever is logged in.
    // (The plugin's hook answers a bad token itself and does not go on; a callback hook lets it.)
    // Order (#34): the CSRF check, then each route's role check (its preValidation), then the
    // route's schema, then the handler: nobody learns a route's schema before both checks pass.
    app.addHook('preValidation', (req, reply, done) => {
      if (req.method === 'POST') app.csrfProtection(req, reply, done)
      else done()
    })
    app.setErrorHandler(errorPage(this.#log))
    this.#pages(app)
    this.#d.accounts.ensureSetupCode()
    return app
  }

  /** Every page's routes, each group a fastify plugin of its own (#34): a parser or hook one adds stays with it. */
  #pages(app: FastifyInstance): void {
    const d = this.#d
    const a = d.config.admin
    const routes: Routes = {
      app: app.withTypeProvider<TypeBoxTypeProvider>(),
      deps: d,
      sessions: this.sessions,
      loginLimit: { max: a.loginAttemptsPerMinute, timeWindow: 60_000 },
      page: (reply, h) => reply.type('text/html; charset=utf-8').send(h.text),
      viewer: (req, reply) => viewerOf(req, reply),
      need: (roles) => (req, reply) => need(req, reply, roles),
      metricsAllowed: (req) => metricsAllowed(d.config, req),
      openAccountProposals: () => this.accountProposals.list().filter((p) => p.state === 'open').length,
    }
    const plugin = (register: (r: Routes) => void) =>
      void app.register((scoped, _opts, done) => {
        register({ ...routes, app: scoped.withTypeProvider<TypeBoxTypeProvider>() })
        done()
      })
    plugin(registerRoutes)
    plugin((r) => registerUserRoutes(r, this.accountProposals))
    plugin(registerQueueRoutes)
    plugin((r) => registerRecordRoutes(r, d.records))
    plugin((r) => registerUnmatchedRoutes(r, d.records))
    plugin(registerConfigRoutes)
    plugin(registerMaintenanceRoutes)
    plugin(registerResetRoutes)
    plugin(registerUpdateRoutes)
  }
}

/** A failure on a page: the page's own layout with what went wrong (a refused form says how to go on); a server fault is logged. */
function errorPage(log: Logger) {
  return async (err: Error & { statusCode?: number }, req: FastifyRequest, reply: FastifyReply) => {
    const code = err.statusCode ?? 500
    if (code >= 500) log.error({ err: err.message, url: req.url }, 'admin page error')
    return reply
      .code(code)
      .type('text/html; charset=utf-8')
      .send(
        layout('Error 錯誤', new Html(''), undefined, { kind: 'error', text: code === 403 ? 'Refused (expired form? reload the page).' : err.message }).text,
      )
  }
}

/** S8: what the browser is told to refuse: anything not from the page itself, framing, referrers, plain HTTP for a year. */
const SECURITY_HEADERS = {
  contentSecurityPolicy: {
    useDefaults: false,
    directives: {
      defaultSrc: ["'self'"],
      scriptSrc: ["'self'"],
      styleSrc: ["'self'"],
      imgSrc: ["'self'", 'data:'],
      connectSrc: ["'self'"],
      fontSrc: ["'self'"],
      objectSrc: ["'none'"],
      baseUri: ["'none'"],
      formAction: ["'self'"],
      frameAncestors: ["'none'"],
    },
  },
  strictTransportSecurity: { maxAge: 31_536_000, includeSubDomains: false },
  referrerPolicy: { policy: 'no-referrer' },
  crossOriginEmbedderPolicy: true,
} as const

/** The admin page's TLS: its own certificate if configured, else the box's (submission's), with submission's TLS 1.2+ ECDHE rules (S1). */
export function adminTlsOptions(config: Config, log: Logger): TlsOptions {
  const { certFile, keyFile } = config.admin.tls
  if (!certFile !== !keyFile) throw boxError('ESTART_REFUSED', 'admin.tls.certFile and admin.tls.keyFile must be set together')
  const material = certFile ? { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), source: certFile } : loadTlsMaterial(config, log)
  return serverTlsOptions(material, config.submission.tls.minVersion)
}

function viewerOf(req: FastifyRequest, reply: FastifyReply): Viewer | undefined {
  const s = req.session
  if (!s?.user || !s.role) return undefined
  return { user: s.user, role: s.role, csrf: reply.generateCsrf({ userInfo: s.id }) }
}

/** The role check every page and action makes on the server, whatever the page shows. */
async function need(req: FastifyRequest, reply: FastifyReply, roles: readonly Role[]): Promise<FastifyReply | undefined> {
  const s = req.session
  if (!s?.user || !s.role) {
    if (req.method === 'GET') return reply.redirect('/login')
    return reply
      .code(401)
      .type('text/html; charset=utf-8')
      .send(loginPage(reply.generateCsrf({ userInfo: 'none' }), 'Please log in. 請先登入。').text)
  }
  if (!roles.includes(s.role))
    return reply
      .code(403)
      .type('text/html; charset=utf-8')
      .send(forbiddenPage(viewerOf(req, reply)).text)
  return undefined
}

/** S11: a scraper with the bearer token (from a 0600 file), or one from the scraper allowlist. */
function metricsAllowed(config: Config, req: FastifyRequest): boolean {
  const m = config.admin.metrics
  if (m.allowFrom.length && new AddressSet(m.allowFrom).has(req.socket.remoteAddress ?? '')) return true
  if (!m.tokenFile) return false
  const header = req.headers.authorization ?? ''
  if (!header.startsWith('Bearer ')) return false
  const want = Buffer.from(readFileSync(m.tokenFile, 'utf8').trim())
  const got = Buffer.from(header.slice(7).trim())
  return want.length > 0 && want.length === got.length && timingSafeEqual(want, got)
}
