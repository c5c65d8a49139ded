import { createRequire } from 'node:module'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import fastifyStatic from '@fastify/static'
import QRCode from 'qrcode'
import type { FastifyReply } from 'fastify'
import { searchTrail, type AuditRecord } from '../audit/search.ts'
import { AccountError, causeText, ROLES, type Role } from './accounts.ts'
import { html, trusted, type Html } from './html.ts'
import { enrolPage, layout, loginPage, recoveryPage, setupPage, table, type Viewer, formBody } from './pages.ts'
import { COOKIE_OPTIONS as COOKIE, SESSION_COOKIE, type Sessions } from './sessions.ts'
import type { Routes } from './types.ts'
import { alarms, dashboardPage, type Signals } from './views.ts'
import { LoginDelays } from './login-delays.ts'
import { AccountQuery, AuditQuery, SeriesQuery } from './schemas.ts'

const ALL: readonly Role[] = ROLES
/** One message for every refused login (S3): it never says whether the name, the password or the code was wrong. */
const REFUSED = 'Name, password or code not accepted, or the account is locked. 帳號、密碼或驗證碼錯誤，或帳號已鎖定。'

/**
 * The page's own script and style, and uPlot's (S11 charts): served by @fastify/static (ETag, 304,
 * HEAD, no path outside its roots), these four names only — whatever else is in either folder is 404.
 */
const STATIC_FILES = new Set(['/app.js', '/app.css', '/uPlot.iife.min.js', '/uPlot.min.css'])
const STATIC_ROOTS = [fileURLToPath(new URL('./static/', import.meta.url)), dirname(createRequire(import.meta.url).resolve('uplot/dist/uPlot.iife.min.js'))]

export function registerRoutes(r: Routes): void {
  registerEntryRoutes(r)
  registerLoginRoutes(r)
  registerDashboardRoutes(r)
  registerAuditRoutes(r)
  registerAccountRoutes(r)
}

/** What the routes below share: accounts, csrfFor, limited, begin. */
function sessionHelpers(r: Routes) {
  const { deps: d, sessions } = r
  const accounts = d.accounts
  const csrfFor = (reply: FastifyReply, sid: string | undefined) => reply.generateCsrf({ userInfo: sid ?? 'none' })
  const limited = { config: { rateLimit: r.loginLimit } }

  /** A fresh session (a new id: no fixation), its cookie set. */
  const begin = (reply: FastifyReply, old: string | undefined, fields: Parameters<Sessions['create']>[0]) => {
    if (old) sessions.end(old)
    const s = sessions.create(fields)
    void reply.setCookie(SESSION_COOKIE, s.id, COOKIE)
    return s
  }
  return { accounts, csrfFor, limited, begin }
}

/** Static files, the start, the first administrator (S8) and TOTP enrolment (S4). */
function registerEntryRoutes(r: Routes): void {
  const { app, sessions } = r
  const { accounts, csrfFor, limited, begin } = sessionHelpers(r)
  void app.register(fastifyStatic, {
    root: STATIC_ROOTS,
    prefix: '/static/',
    allowedPath: (path) => STATIC_FILES.has(path),
    index: false,
    list: false,
    // Public and the same for everyone, unlike the pages (no-store): a browser may keep them an hour.
    maxAge: 3_600_000,
  })

  app.get('/', async (req, reply) => {
    if (!accounts.hasAdmin()) return reply.redirect('/setup')
    return reply.redirect(req.session?.user ? '/dashboard' : '/login')
  })

  // S8: the first administrator, with the one-time setup code.
  app.get('/setup', async (req, reply) => {
    if (accounts.hasAdmin()) return reply.redirect('/login')
    return r.page(reply, setupPage(csrfFor(reply, req.session?.id)))
  })
  app.post('/setup', limited, async (req, reply) => {
    if (accounts.hasAdmin()) return reply.redirect('/login')
    const b = formBody(req)
    try {
      await accounts.createFirstAdmin(b.code ?? '', (b.name ?? '').trim(), b.password ?? '', req.socket.remoteAddress ?? '')
    } catch (err) {
      if (!(err instanceof AccountError)) throw err
      return r.page(reply.code(400), setupPage(csrfFor(reply, req.session?.id), err.message))
    }
    begin(reply, req.session?.id, { enrolling: (b.name ?? '').trim() })
    return reply.redirect('/enrol', 303)
  })

  // S4: every account enrols TOTP before it can log in.
  app.get('/enrol', async (req, reply) => {
    const name = req.session?.enrolling
    const uri = name && (await accounts.enrolmentUri(name))
    if (!name || !uri) return reply.redirect('/login')
    return r.page(reply, await enrolment(reply, req.session!.id, name, uri))
  })
  app.post('/enrol', limited, async (req, reply) => {
    const s = req.session
    const name = s?.enrolling
    if (!s || !name) return reply.redirect('/login', 303)
    const codes = await accounts.confirmTotp(name, formBody(req).code ?? '')
    if (!codes) {
      const uri = await accounts.enrolmentUri(name)
      if (!uri) return reply.redirect('/login', 303)
      return r.page(reply.code(400), await enrolment(reply, s.id, name, uri, 'That code is not right; try the next one. 驗證碼錯誤。'))
    }
    sessions.end(s.id)
    void reply.clearCookie(SESSION_COOKIE, COOKIE)
    return r.page(reply, recoveryPage(codes))
  })
}

/** Login with its per-address delays (#31) and logout (S4, S6). */
function registerLoginRoutes(r: Routes): void {
  const { app, deps: d, sessions } = r
  const { accounts, csrfFor, limited, begin } = sessionHelpers(r)
  app.get('/login', async (req, reply) => {
    if (!accounts.hasAdmin()) return reply.redirect('/setup')
    if (req.session?.user) return reply.redirect('/dashboard')
    return r.page(reply, loginPage(csrfFor(reply, req.session?.id)))
  })
  // #31: each failure from an address makes its next attempt wait longer (1, 2, 4, 8 s).
  const delays = new LoginDelays(d.config.admin.loginDelayMs, d.clock)
  app.post('/login', limited, async (req, reply) => {
    const b = formBody(req)
    const name = (b.name ?? '').trim().slice(0, 64)
    const address = req.socket.remoteAddress ?? ''
    const wait = delays.before(address)
    if (wait) await sleep(wait)
    const result = await accounts.login(name, b.password ?? '', b.code ?? '', address)
    if (result.ok) delays.succeeded(address)
    else if (result.reason !== 'not-enrolled') delays.failed(address)
    if (result.ok) {
      begin(reply, req.session?.id, { user: result.user.name, role: result.user.role })
      return reply.redirect(result.user.passwordExpired ? '/account?expired=1' : '/dashboard', 303)
    }
    if (result.reason === 'not-enrolled') {
      begin(reply, req.session?.id, { enrolling: name })
      return reply.redirect('/enrol', 303)
    }
    if (result.lockedNow) sessions.endUser(name)
    return r.page(reply.code(401), loginPage(csrfFor(reply, req.session?.id), REFUSED))
  })

  app.post('/logout', async (req, reply) => {
    const s = req.session
    if (s) {
      sessions.end(s.id)
      if (s.user) d.events.emit({ type: 'admin.action', who: s.user, via: 'admin-page', action: 'logout', target: undefined, outcome: 'ok' })
    }
    void reply.clearCookie(SESSION_COOKIE, COOKIE)
    return r.page(reply, loginPage(csrfFor(reply, undefined), undefined, 'Logged out. 已登出。'))
  })
}

/** The dashboard, its series and /metrics (S11). */
function registerDashboardRoutes(r: Routes): void {
  const { app, deps: d } = r
  const { accounts } = sessionHelpers(r)
  /** What the dashboard and /metrics know beside the status (S11). */
  const signals = (): Signals => ({
    failingWebhooks: d.metrics.failingWebhooks,
    auditOverBudget: d.metrics.auditOverBudget,
    lockedAccounts: accounts
      .users()
      .filter((u) => u.locked)
      .map((u) => ({ name: u.name, cause: causeText(u.lockCause) })),
    accountProposals: r.openAccountProposals(),
    now: d.clock.now(),
  })
  const statusFor = async (who: string) => {
    const status = await d.control.request({ cmd: 'box.status', who }, 'admin-page')
    return status.ok ? (status.result as Record<string, unknown>) : {}
  }
  app.get('/dashboard', { preValidation: r.need(ALL) }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    return r.page(reply, dashboardPage(v, await statusFor(v.user), d.config, d.system.current(), signals(), d.firmware()))
  })
  app.get('/api/series', { preValidation: r.need(ALL), schema: { querystring: SeriesQuery } }, async (req, reply) => {
    const span = req.query.span ?? 'hour'
    return reply.send(d.metrics.series(span))
  })
  // S11: Prometheus text exposition, for a scraper with the token or from the scraper allowlist.
  app.get('/metrics', async (req, reply) => {
    if (!r.metricsAllowed(req)) return reply.code(401).header('www-authenticate', 'Bearer').type('text/plain').send('a bearer token is needed\n')
    d.metrics.setAlarms(alarms(await d.control.statusForMonitoring(), d.config, signals(), d.system.current()))
    return reply.type(d.metrics.registry.contentType).send(await d.metrics.registry.metrics())
  })
}

/** The audit trail and the failed logins, for admins and auditors (S6). */
function registerAuditRoutes(r: Routes): void {
  const { app, deps: d } = r
  // S6: the audit trail, searched by queue id, statement id, recipient (by its HMAC), type and time.
  app.get('/audit', { preValidation: r.need(['admin', 'auditor']), schema: { querystring: AuditQuery } }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const q = req.query
    const asked = (['id', 'statement', 'recipient', 'type', 'from', 'to'] as const).some((k) => q[k])
    const found: AuditRecord[] = []
    if (asked) {
      const time = (s: string | undefined, end: boolean) => {
        const ms = s ? Date.parse(/^\d{4}-\d{2}-\d{2}$/.test(s) ? `${s}T${end ? '23:59:59.999' : '00:00:00'}Z` : s) : NaN
        return Number.isNaN(ms) ? undefined : ms
      }
      for await (const rec of searchTrail(d.auditDir, {
        id: q.id || undefined,
        statementId: q.statement || undefined,
        recipientHash: q.recipient ? await d.recipientHash(q.recipient.trim()) : undefined,
        type: q.type || undefined,
        from: time(q.from, false),
        to: time(q.to, true),
        limit: 500,
      }))
        found.push(rec)
      d.events.emit({ type: 'admin.action', who: v.user, via: 'admin-page', action: 'audit.search', target: q.id || q.statement, outcome: 'ok' })
    }
    const field = (name: keyof typeof q, label: string) => html`<label>${label} <input name="${name}" value="${q[name] ?? ''}" /></label>`
    return r.page(
      reply,
      layout(
        'Audit trail 稽核軌跡',
        html`<form method="get" action="/audit" class="row">
            ${field('id', 'Queue id')}${field('statement', 'Statement id 帳單編號')}${field('recipient', 'Recipient 收件者')}${field('type', 'Event type')}
            ${field('from', 'From (YYYY-MM-DD)')}${field('to', 'To')}<button>Search 搜尋</button>
          </form>
          <p>
            <a href="/audit/verify">Chain verification 稽核鏈驗證</a>${
              v.role === 'auditor' ? html` · <a href="/audit/export">Export the trail (tar.gz, with verify.sh) 匯出</a>` : ''
            }
          </p>
          ${asked ? table(['seq', 'time', 'type', 'id', 'details'], found.map(auditRow), 'No records match. 查無紀錄。') : ''}`,
        v,
      ),
    )
  })

  // S6: the last day's failed logins, by account and address, for the daily review.
  app.get('/logins', { preValidation: r.need(['admin', 'auditor']) }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const since = d.clock.now() - 86_400_000
    const by = new Map<string, { user: string; address: string; count: number; last: string; reasons: Set<string> }>()
    for await (const rec of searchTrail(d.auditDir, { type: 'admin.login', from: since })) {
      if (rec.outcome !== 'failure') continue
      const key = `${String(rec.user)}\0${String(rec.clientAddress)}`
      const e = by.get(key) ?? { user: String(rec.user), address: String(rec.clientAddress), count: 0, last: rec.time, reasons: new Set<string>() }
      e.count++
      e.last = rec.time
      e.reasons.add(String(rec.reason))
      by.set(key, e)
    }
    const rows = [...by.values()].sort((a, b) => b.count - a.count).map((e) => [e.user, e.address, e.count, [...e.reasons].join(', '), e.last])
    // #31: every lock of the day, with its cause: the addresses and counts of the failures behind it.
    const locks: unknown[][] = []
    for await (const rec of searchTrail(d.auditDir, { type: 'admin.action', from: since }))
      if (rec.action === 'user.lock') locks.push([rec.time, String(rec.target), (typeof rec.detail === 'string' ? rec.detail : '').replace(/^from /, '')])
    return r.page(
      reply,
      layout(
        'Failed logins, last 24 h 近 24 小時登入失敗',
        html`${table(['Account 帳號', 'Address 來源', 'Failures 次數', 'Why', 'Last 最近'], rows)}
          <h2>Accounts locked 帳號鎖定</h2>
          ${table(['Locked 鎖定時間', 'Account 帳號', 'Failed logins from 失敗來源'], locks, 'No account locked in the last 24 hours. 近 24 小時無帳號鎖定。')}`,
        v,
      ),
    )
  })
}

/** One's own account: password and authenticator (S3, S4). */
function registerAccountRoutes(r: Routes): void {
  const { app, sessions } = r
  const { accounts, begin } = sessionHelpers(r)
  // One's own account: the password (S3: asked for after 90 days).
  const accountPage = (v: Viewer, notice?: { kind: 'ok' | 'error'; text: string }) =>
    layout(
      'My account 我的帳號',
      html`<form method="post" action="/account/password" class="stack">
          <input type="hidden" name="_csrf" value="${v.csrf}" />
          <label>Current password 目前密碼 <input name="current" type="password" autocomplete="current-password" required /></label>
          <label>New password 新密碼 <input name="next" type="password" autocomplete="new-password" required minlength="12" /></label>
          <button>Change password 變更密碼</button>
        </form>
        <h2>Authenticator 驗證器</h2>
        <form method="post" action="/account/mfa" class="stack">
          <input type="hidden" name="_csrf" value="${v.csrf}" />
          <p class="hint">A new phone? Enrol a new authenticator: the old one and the recovery codes stop working. 更換驗證器。</p>
          <label>Password 密碼 <input name="current" type="password" autocomplete="current-password" required /></label>
          <button>Enrol a new authenticator 重新設定</button>
        </form>`,
      v,
      notice,
    )
  app.get('/account', { preValidation: r.need(ALL), schema: { querystring: AccountQuery } }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const expired = req.query.expired
    return r.page(
      reply,
      accountPage(
        v,
        expired
          ? {
              kind: 'error',
              text: 'Your password was chosen by an administrator or is over 90 days old; please change it. 請變更密碼（管理員設定的初始密碼或已逾 90 天）。',
            }
          : undefined,
      ),
    )
  })
  app.post('/account/password', { preValidation: r.need(ALL) }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const b = formBody(req)
    try {
      await accounts.changePassword(v.user, b.current ?? '', b.next ?? '')
      return r.page(reply, accountPage(v, { kind: 'ok', text: 'Password changed. 密碼已變更。' }))
    } catch (err) {
      if (!(err instanceof AccountError)) throw err
      return r.page(reply.code(400), accountPage(v, { kind: 'error', text: err.message }))
    }
  })

  app.post('/account/mfa', { preValidation: r.need(ALL) }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    try {
      await accounts.resetOwnMfa(v.user, formBody(req).current ?? '')
    } catch (err) {
      if (!(err instanceof AccountError)) throw err
      return r.page(reply.code(400), accountPage(v, { kind: 'error', text: err.message }))
    }
    // Logged out everywhere; the new authenticator is enrolled as at a first login.
    sessions.endUser(v.user)
    begin(reply, undefined, { enrolling: v.user })
    return reply.redirect('/enrol', 303)
  })
}

async function enrolment(reply: FastifyReply, sid: string, name: string, uri: string, error?: string): Promise<Html> {
  const svg = await QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 })
  const secret = new URL(uri).searchParams.get('secret') ?? ''
  return enrolPage(reply.generateCsrf({ userInfo: sid }), name, trusted(svg), secret.replace(/(.{4})/g, '$1 ').trim(), error)
}

function auditRow(rec: AuditRecord): unknown[] {
  const { seq, time, type, id, prev: _prev, mac: _mac, ...rest } = rec
  return [seq, time, type, typeof id === 'string' ? html`<a href="/queue/${id}">${id}</a>` : '', JSON.stringify(rest).slice(0, 400)]
}
