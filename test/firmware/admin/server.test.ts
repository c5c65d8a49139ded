import { readFileSync, writeFileSync } from 'node:fs'
import { request } from 'node:https'
import { join } from 'node:path'
import { connect, type ConnectionOptions } from 'node:tls'
import t from 'tap'
import { ALARM_KINDS } from '../../../firmware/admin/views.ts'
import { controlRequests } from '../../../firmware/control/server.ts'
import { dayFormatter } from '../../../firmware/ledger/ledger.ts'
import { hotp, stepAt } from '../../../firmware/admin/totp.ts'
import { tempDir } from '../../helpers/box.ts'
import { smtpError, startReceiver } from '../../helpers/receiver.ts'
import { submitter } from '../../helpers/daemon.ts'
import { adminBox, approvedAccount, enrolSecret, loggedIn, secondAdmin, type AdminClient } from '../../helpers/admin.ts'

/**
 * The admin page against the real daemon, over real HTTPS (S3–S6, S8, S11):
 * the checks made on requests. What a person sees and clicks is tested in
 * Chromium (admin-browser.test.ts).
 */
const ADMIN = { name: 'wang', password: 'Tea-kettle 7 orchids' }
const OPERATOR = { name: 'lin', password: 'Orchid-kettle 8 tea' }
const AUDITOR = { name: 'chen', password: 'Plum-blossom 9 ink' }
const LOCKED = { name: 'ho', password: 'Maple-syrup 3 jars' }
const SECOND = { name: 'mei', password: 'Winter-melon 5 soup' }
const TOKEN = 'scrape-token-0123456789abcdef'
/** UTC−12 before noon UTC (yesterday there), UTC+14 after it (tomorrow there). */
const OTHER_DAY_ZONE = new Date().getUTCHours() < 12 ? 'Etc/GMT+12' : 'Etc/GMT-14'

t.test('the admin page: setup, login, lockout, roles, CSRF, sessions, metrics', async (t) => {
  const rx = await startReceiver(t, { onRcptTo: () => smtpError(451, '4.2.0 try again later') })
  const tokenFile = join(tempDir(t), 'metrics-token')
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 })
  const box = await adminBox(t, {
    // Far above what the test's logins need in a minute; the per-address limit has a test of its own.
    // Browsers from 127.0.0.1 only: 127.0.0.2 is another host on the loopback net, and is refused.
    admin: { metrics: { tokenFile }, loginAttemptsPerMinute: 500, loginDelayMs: 50, allowFrom: ['127.0.0.1/32'] },
    // A reporting zone whose date is never today's UTC date: the pages must use the ledger's days.
    reports: { timeZone: OTHER_DAY_ZONE },
    delivery: { routes: [{ domain: '*', host: '127.0.0.1', port: rx.port }] },
  })
  t.match(box.child.stderr(), /admin page\s+https:\/\/127\.0\.0\.1:\d+\//, 'the start message names the admin page')
  t.match(box.child.stderr(), /one-time setup code [A-Z2-9]{5}-/, 'and the setup code')

  await t.test('static files: the four the page needs, cached an hour and revalidated; nothing else under /static/', async (t) => {
    const c = box.client()
    const css = await c.get('/static/app.css')
    t.match(css, { status: 200, headers: { 'content-type': /^text\/css/ } })
    t.equal(css.headers['cache-control'], 'public, max-age=3600', 'public and the same for everyone, unlike the pages')
    t.equal(css.body, readFileSync(new URL('../../../firmware/admin/static/app.css', import.meta.url), 'utf8'))
    t.equal((await c.get('/static/app.css', { 'if-none-match': String(css.headers.etag) })).status, 304, 'revalidated by its ETag')
    for (const name of ['app.js', 'uPlot.iife.min.js', 'uPlot.min.css'])
      t.match((await c.get(`/static/${name}`)).headers['content-type'], /javascript|css/, name)
    for (const path of ['/static/uPlot.esm.js', '/static/', '/static/../routes.ts', '/static/%2e%2e/routes.ts', '/static/.hidden', '/static/app.js/'])
      t.equal((await c.get(path)).status, 404, `${path}: not served`)
    t.equal((await c.get('/dashboard')).headers['cache-control'], 'no-store', 'a page is still never kept')
  })

  await t.test('S8: the setup code makes the first administrator once; TOTP is enrolled; recovery codes shown', async (t) => {
    const c = box.client()
    t.equal((await c.get('/')).headers.location, '/setup')
    await c.get('/setup')
    const code = readFileSync(join(box.dataDir, 'admin', 'setup-code'), 'utf8').trim()
    t.equal((await c.post('/setup', { code, name: ADMIN.name, password: ADMIN.password }, { csrf: false })).status, 403, 'no CSRF token: refused')
    const wrong = await c.post('/setup', { code: 'AAAAA-AAAAA-AAAAA-AAAAA', name: ADMIN.name, password: ADMIN.password })
    t.equal(wrong.status, 400)
    t.match(wrong.body, /setup code is wrong, used or expired/)
    const weak = await c.post('/setup', { code, name: ADMIN.name, password: 'password1234' })
    t.match(weak.body, /needs a symbol|commonly used/)
    const made = await c.post('/setup', { code, name: ADMIN.name, password: ADMIN.password })
    t.equal(made.status, 303)
    t.equal(made.headers.location, '/enrol')
    const enrol = await c.get('/enrol')
    t.match(enrol.body, /<svg/, 'the QR code is drawn by the box')
    const secret = enrolSecret(enrol.body)
    t.equal((await c.post('/enrol', { code: '000000' })).status, 400, 'a wrong code is refused')
    const done = await c.post('/enrol', { code: await box.code(secret) })
    const recovery = [...done.body.matchAll(/<li><code>([0-9a-f-]+)<\/code><\/li>/g)].map((m) => m[1]!)
    t.equal(recovery.length, 10, 'ten recovery codes, shown once')

    const again = box.client()
    t.equal((await again.get('/setup')).headers.location, '/login', 'no setup page once an administrator exists')
    await again.get('/login')
    t.equal((await again.post('/setup', { code, name: 'mallory', password: ADMIN.password })).headers.location, '/login', 'a second use of the code fails')
    ;(box as unknown as { secret: Buffer }).secret = secret
  })
  const adminSecret = () => (box as unknown as { secret: Buffer }).secret

  let admin: AdminClient
  await t.test('S4: login with password and code; the session cookie is __Host-, Secure, HttpOnly, SameSite=Strict; no fixation', async (t) => {
    const c = box.client()
    c.cookies.set('__Host-sg-session', 'planted-by-someone-else')
    await c.get('/login')
    const r = await c.post('/login', { name: ADMIN.name, password: ADMIN.password, code: await box.code(adminSecret()) })
    t.equal(r.status, 303)
    const set = ([] as string[]).concat(r.headers['set-cookie'] ?? []).find((h) => h.startsWith('__Host-sg-session='))!
    t.match(set, /; Path=\//)
    t.match(set, /; HttpOnly/)
    t.match(set, /; Secure/)
    t.match(set, /; SameSite=Strict/)
    t.not(c.cookies.get('__Host-sg-session'), 'planted-by-someone-else', 'a new session id at login')
    const dash = await c.get('/dashboard')
    t.equal(dash.status, 200)
    t.match(dash.body, /Dashboard/)
    const planted = box.client()
    planted.cookies.set('__Host-sg-session', 'planted-by-someone-else')
    t.equal((await planted.get('/dashboard')).headers.location, '/login', 'the planted id is worth nothing')
    admin = c
  })

  await t.test('S1, S8: the management listener speaks TLS 1.2+ with ECDHE only, and only to the allowed browsers', async (t) => {
    const { port } = new URL(box.url)
    const hello = (opts: ConnectionOptions) =>
      new Promise<{ protocol: string | null; cipher: string } | Error>((resolve) => {
        const s = connect({ host: '127.0.0.1', port: Number(port), ca: box.ca, servername: 'localhost', rejectUnauthorized: false, ...opts }, () => {
          resolve({ protocol: s.getProtocol(), cipher: s.getCipher().name })
          s.end()
        })
        s.on('error', (err: Error) => resolve(err))
      })
    const old = await hello({ minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' })
    t.ok(old instanceof Error, `TLS 1.0/1.1 refused (${(old as Error).message})`)
    const rsa = await hello({ maxVersion: 'TLSv1.2', ciphers: 'AES256-GCM-SHA384:AES128-GCM-SHA256' })
    t.ok(rsa instanceof Error, 'TLS 1.2 without ECDHE (static RSA key exchange) refused')
    const ecdhe = await hello({ maxVersion: 'TLSv1.2' })
    t.match(ecdhe, { protocol: 'TLSv1.2', cipher: /^ECDHE-/ }, 'TLS 1.2 with ECDHE')
    t.match(await hello({}), { protocol: 'TLSv1.3' })

    const from = (localAddress: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(new URL('/login', box.url), { ca: box.ca, servername: 'localhost', localAddress }, (res) => {
          let body = ''
          res.setEncoding('utf8').on('data', (d: string) => (body += d))
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
        })
        req.on('error', reject)
        req.end()
      })
    const other = await from('127.0.0.2')
    t.equal(other.status, 403, 'a browser outside admin.allowFrom gets 403 before any page')
    t.notMatch(other.body, /<form/, 'and no login form')
    t.equal((await from('127.0.0.1')).status, 200)
  })

  await t.test('the security headers on every page', async (t) => {
    const r = await admin.get('/dashboard')
    const csp = String(r.headers['content-security-policy'])
    t.match(csp, /default-src 'self'/)
    t.match(csp, /script-src 'self'/)
    t.notMatch(csp, /unsafe-inline/)
    t.match(csp, /frame-ancestors 'none'/)
    t.match(String(r.headers['strict-transport-security']), /max-age=\d+/)
    t.equal(r.headers['x-content-type-options'], 'nosniff')
    t.equal(r.headers['cache-control'], 'no-store')
    t.notMatch(r.body, /<script>[^<]/, 'no inline script')
  })

  let op: AdminClient
  let au: AdminClient
  let lockedSecret: Buffer
  let lockedClient: AdminClient
  let second: AdminClient
  let secondSecret: Buffer
  await t.test('S5, #31: accounts come from a proposal a second administrator approves; each person sets their own password and authenticator', async (t) => {
    // With one administrator, the second is enrolled at the box's console.
    ;({ client: second, secret: secondSecret } = await secondAdmin(box, admin, SECOND))
    // Each proposes in turn and the other approves (a TOTP code is good once: taking turns spares waiting for the next one).
    for (const [who, role, by, approver, approverSecret] of [
      [OPERATOR, 'operator', admin, second, secondSecret],
      [AUDITOR, 'auditor', second, admin, adminSecret()],
      [LOCKED, 'operator', second, admin, adminSecret()],
    ] as const) {
      const { secret } = await approvedAccount(box, by, approver, approverSecret, who, role)
      if (who === OPERATOR) op = await loggedIn(box, who.name, who.password, secret)
      else if (who === AUDITOR) au = await loggedIn(box, who.name, who.password, secret)
      else lockedSecret = secret
    }
    t.match((await admin.get('/users')).body, new RegExp(`${OPERATOR.name}</td>\\s*<td>operator`), 'the operator is there')
  })

  await t.test('S5: roles are checked on the server, with direct requests', async (t) => {
    await op.get('/dashboard')
    t.equal((await op.get('/users')).status, 403, 'an operator cannot open users')
    t.equal((await op.post('/users', { name: 'mallory', role: 'admin', reason: 'x' })).status, 403, 'nor propose an account')
    t.equal((await op.get('/audit?id=x')).status, 403, 'nor search the audit trail')
    await au.get('/dashboard')
    t.equal((await au.post('/queue/Q1/hold', {})).status, 403, 'an auditor cannot act on the queue')
    t.equal((await au.get('/users')).status, 403)
    t.equal((await au.get('/audit?type=admin.login')).status, 200, 'but searches the trail')
    t.equal((await box.client().post('/queue/Q1/hold', {}, { csrf: false })).status, 403, 'no session, no token: refused')
  })

  await t.test('S4: five failures lock an account, the right password too, until another administrator unlocks it', async (t) => {
    const c = box.client()
    await c.get('/login')
    for (let i = 0; i < 5; i++) {
      const r = await c.post('/login', { name: LOCKED.name, password: 'not the password 1!', code: '000000' })
      t.equal(r.status, 401)
      t.match(r.body, /Name, password or code not accepted/, 'the same words whatever was wrong')
    }
    const locked = await c.post('/login', { name: LOCKED.name, password: LOCKED.password, code: '000000' })
    t.equal(locked.status, 401, 'locked: the right password does not help')
    const unknown = await c.post('/login', { name: 'nobody', password: LOCKED.password, code: '123456' })
    const words = (r: { body: string }) => /<p class="notice[^>]*>[^<]*/.exec(r.body)?.[0]
    t.equal(words(unknown), words(locked), 'an unknown name reads the same')

    const failed = await admin.get('/logins')
    t.match(
      failed.body,
      new RegExp(`<td>${LOCKED.name}</td><td>127\\.0\\.0\\.1</td><td>6</td><td>bad-password, locked</td>`),
      'the failed-logins page lists them',
    )
    await admin.get('/users')
    t.equal((await admin.post(`/users/${LOCKED.name}/unlock`, { reason: '' })).status, 400, 'an unlock needs a reason')
    await admin.get('/users')
    const proposed = await admin.post(`/users/${LOCKED.name}/unlock`, { reason: 'called back on the desk phone' })
    t.match(proposed.body, /waits for a second administrator/, '#31: an unlock is a proposal')
    const page = await second.get('/users')
    const id = /\/users\/proposals\/([0-9a-f]{12})\/approve/.exec(page.body)![1]!
    t.equal((await second.post(`/users/proposals/${id}/approve`, { code: await box.code(secondSecret) })).status, 200, 'the second administrator approves')
    lockedClient = await loggedIn(box, LOCKED.name, LOCKED.password, lockedSecret)
    const trail = await au.get('/audit?type=admin.action')
    t.match(trail.body, /user\.unlock/, 'the unlock is in the audit trail')
    t.match(trail.body, /called back on the desk phone/, 'with its reason')
  })

  await t.test('the queue: actions go through the queue service and land in the audit trail; XSS from mail renders as text', async (t) => {
    const smtp = await submitter(t, box.dataDir, box.submissionPort)
    const xss = '<img src=x onerror=alert(1)>'
    await smtp.sendMail({
      from: 'statements@bank.example',
      to: 'wang@example.net',
      subject: 'statement',
      text: 'statement',
      headers: { 'X-Statement-ID': `S-${xss}`, 'X-Statement-Class': 'monthly', 'X-Statement-Batch': '2026-11' },
    })
    let id = ''
    for (let i = 0; i < 50 && !id; i++) {
      const list = await admin.get('/queue')
      id = /<a href="\/queue\/([^"]+)">/.exec(list.body)?.[1] ?? ''
      if (!id) await new Promise((r) => setTimeout(r, 200))
    }
    t.ok(id, 'the mail is listed')
    // The list adds what the ledger knows (it follows the trail, a moment behind the spool).
    let listed = ''
    for (let i = 0; i < 50 && !listed.includes('S-&lt;img'); i++) {
      listed = (await admin.get('/queue')).body
      if (!listed.includes('S-&lt;img')) await new Promise((r) => setTimeout(r, 200))
    }
    t.match(listed, '<td>S-&lt;img src=x onerror=alert(1)&gt;</td>', 'the list shows the statement id from the ledger, as text')
    t.match(listed, '<td>w****g@example.net</td>', 'and the recipient, masked')
    t.notMatch(listed, xss)
    t.notMatch(listed, 'wang@example.net')
    // An operator finds a customer's mail by statement id or by address (looked up by its HMAC), and the search is in the trail.
    const byStatement = await op.get(`/queue?statement=${encodeURIComponent(`S-${xss}`)}`)
    t.match(byStatement.body, `<a href="/queue/${id}">`, 'found by statement id')
    t.match(byStatement.body, /1 in the queue/)
    t.match((await op.get('/queue?recipient=wang%40example.net')).body, `<a href="/queue/${id}">`, 'found by recipient')
    t.notMatch((await op.get('/queue?recipient=lin%40example.net')).body, `<a href="/queue/${id}">`, 'not under another')
    t.match((await op.get('/queue?statement=S-none')).body, /0 in the queue/)
    let searches = ''
    for (let i = 0; i < 50 && !searches.includes('queue.search'); i++) {
      searches = (await au.get('/audit?type=admin.action')).body
      if (!searches.includes('queue.search')) await new Promise((r) => setTimeout(r, 200))
    }
    t.match(searches, /queue\.search/, 'each search is an admin action in the trail')
    t.notMatch(searches, 'wang@example.net', 'without the address searched for')
    const shown = await admin.get(`/queue/${id}`)
    t.notMatch(shown.body, xss, 'the statement id is not markup')
    t.match(shown.body, 'S-&lt;img src=x onerror=alert(1)&gt;')
    t.notMatch(shown.body, 'wang@example.net', 'recipients are masked')

    // M9: the mail's history from the ledger, for every role that sees the queue; the trail's records only for those who may search it.
    let history = ''
    for (let i = 0; i < 50 && !/deferred ×\d/.test(history); i++) {
      history = (await op.get(`/queue/${id}`)).body
      if (!/deferred ×\d/.test(history)) await new Promise((r) => setTimeout(r, 200))
    }
    t.match(history, /History 歷程/)
    t.match(history, /<td>w\*\*\*\*g@example\.net<\/td><td>[\d-]+ [\d:]+<\/td><td>accepted 收件<\/td>/, 'accepted, with its time')
    t.match(history, /deferred ×\d+ 延遲<\/td><td>451 4\.2\.0 try again later/, 'the deferrals with the last reply')
    t.notMatch(history, 'href="/audit?id=', "an operator is not sent to the trail's search")
    t.match((await admin.get(`/queue/${id}`)).body, `href="/audit?id=${id}"`, 'an administrator is')
    for (let i = 0; i < 50; i++) {
      const held = await op.post(`/queue/${id}/hold`, {})
      if (held.status === 200) break
      await op.get(`/queue/${id}`)
      await new Promise((r) => setTimeout(r, 200))
    }
    t.match((await op.get(`/queue/${id}`)).body, /<td>State 狀態<\/td><td>held<\/td>/)
    t.equal((await op.post(`/queue/${id}/remove`, { reason: '' })).status, 409, 'a removal needs a reason')
    await op.get(`/queue/${id}`)
    t.equal((await op.post(`/queue/${id}/remove`, { reason: 'customer closed the account <b>' })).status, 200)
    const trail = await admin.get(`/audit?id=${encodeURIComponent(id)}`)
    t.match(trail.body, /queue\.hold/, 'the hold is in the audit trail')
    t.match(trail.body, /admin-page/, 'as an action on the admin page')
    t.match(trail.body, /lin/, 'by the operator')
    t.notMatch(trail.body, '<b>', 'the reason is text')
    const status = await controlRequests(join(box.dataDir, 'control.sock'), [{ cmd: 'queue.show', args: { id } }])
    t.match(status[0], { ok: false }, 'the same queue service: the CLI sees it gone')
  })

  await t.test('reports, paper-owed list and CSV; keys and certificates; chain verification; export for the auditor only', async (t) => {
    const month = dayFormatter(OTHER_DAY_ZONE)(Date.now()).slice(0, 7)
    t.not(dayFormatter(OTHER_DAY_ZONE)(Date.now()), new Date().toISOString().slice(0, 10), "the firm's day is not the UTC date")
    t.match((await op.get('/reports')).body, /Submitted 收件/)
    const paper = await op.get(`/reports/paper?month=${month}`)
    t.equal(paper.status, 200)
    t.match(paper.body, /Download CSV/)
    const csv = await op.get(`/reports/paper.csv?month=${month}`)
    t.equal(
      csv.body.split('\r\n')[0],
      '\ufeffaccount,statement_id,queue_id,statement_class,batch,recipient,recipient_hmac,reason,submitted_at,delivered_at,failed_at,paper_owed_at',
    )
    t.match(String(csv.headers['content-disposition']), `paper-owed-${month}.csv`)
    t.equal((await op.get('/reports/paper?month=2026-13')).status, 400)
    const certs = await au.get('/certificates')
    t.match(certs.body, /admin\/password-pepper<\/td><td>[^<]*<\/td><td>yes/, 'the HSM keys, present')
    t.match(certs.body, /TLS \(submission, admin page\)/)

    await au.get('/audit/verify')
    t.equal((await au.post('/audit/verify', {})).status, 303)
    let page = ''
    for (let i = 0; i < 50 && !/OK: |FAIL: |Could not/.test(page); i++) {
      await new Promise((r) => setTimeout(r, 100))
      page = (await au.get('/audit/verify')).body
    }
    t.match(page, /OK: [\d,]+ records/, 'the chain verifies')
    t.equal((await op.get('/audit/export')).status, 403, 'an operator cannot export')
    t.equal((await admin.get('/audit/export')).status, 403, "nor an administrator: export is the auditor's")
    const bundle = await au.getBuffer('/audit/export')
    t.equal(bundle.status, 200)
    t.same([...bundle.body.subarray(0, 2)], [0x1f, 0x8b], 'gzip')
    const { execFileSync } = await import('node:child_process')
    const listing = execFileSync('tar', ['-tzf', '-'], { input: bundle.body }).toString()
    t.match(listing, /verify\.sh/)
    t.match(listing, /SHA256SUMS/)
  })

  await t.test('S4: a person moves to a new authenticator with their password; the old codes stop working', async (t) => {
    const c = lockedClient
    await c.get('/account')
    t.equal((await c.post('/account/mfa', { current: 'not it 1!' })).status, 400)
    await c.get('/account')
    const moved = await c.post('/account/mfa', { current: LOCKED.password })
    t.equal(moved.headers.location, '/enrol')
    const fresh = enrolSecret((await c.get('/enrol')).body)
    t.notSame(fresh, lockedSecret)
    await c.post('/enrol', { code: await box.code(fresh) })
    const old = box.client()
    await old.get('/login')
    t.equal(
      (await old.post('/login', { name: LOCKED.name, password: LOCKED.password, code: hotp(lockedSecret, stepAt(Date.now())) })).status,
      401,
      'the old authenticator',
    )
    await loggedIn(box, LOCKED.name, LOCKED.password, fresh)
  })

  await t.test('S6: logout ends the session on the server', async (t) => {
    const sid = au.cookies.get('__Host-sg-session')!
    await au.get('/dashboard')
    await au.post('/logout', {})
    const replay = box.client()
    replay.cookies.set('__Host-sg-session', sid)
    t.equal((await replay.get('/dashboard')).headers.location, '/login', 'the old id is dead')
  })

  await t.test('S11: /metrics needs the bearer token; with it, the queue gauge matches the status', async (t) => {
    const c = box.client()
    t.equal((await c.get('/metrics')).status, 401)
    t.equal((await c.get('/metrics', { authorization: 'Bearer wrong' })).status, 401)
    const r = await c.get('/metrics', { authorization: `Bearer ${TOKEN}` })
    t.equal(r.status, 200)
    t.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/)
    const [status] = await controlRequests(join(box.dataDir, 'control.sock'), [{ cmd: 'queue.summary' }])
    const summary = (status as { result: Record<string, number> }).result
    for (const line of r.body.split('\n').filter((l) => l.startsWith('sg_queue_mails{'))) {
      const m = /^sg_queue_mails\{state="(\w+)"\} (\d+)$/.exec(line)
      t.ok(m, line)
      t.equal(Number(m![2]), summary[m![1]!] ?? 0, `${m![1]} as the status says`)
    }
    t.match(r.body, /sg_admin_logins_total\{outcome="failure"\} \d+/)
    t.match(r.body, /# TYPE sg_submissions_total counter/)
    t.match(r.body, /# TYPE sg_egress_bytes_by_source_total counter/, 'bytes out per egress address (the engine test counts them)')
    t.match(r.body, /sg_hsm_up 1/)
    // S11: every alarm the dashboard can raise, by kind, for the rules in docs/monitoring/alerts.yml.
    for (const kind of ALARM_KINDS) t.match(r.body, new RegExp(`^sg_alarms\\{kind="${kind}"\\} \\d+$`, 'm'), `sg_alarms{kind="${kind}"}`)
    t.match(r.body, /^sg_alarms\{kind="hsm"\} 0$/m, 'the HSM is connected: its alarm is quiet')
  })
})

t.test('S4: logins from one address are rate limited on top of the account lockout', async (t) => {
  const box = await adminBox(t, { admin: { loginAttemptsPerMinute: 3 } })
  const c = box.client()
  await c.get('/setup')
  const codes = []
  for (let i = 0; i < 4; i++) codes.push((await c.post('/setup', { code: 'AAAAA-AAAAA-AAAAA-AAAAA', name: 'wang', password: 'x' })).status)
  t.same(codes, [400, 400, 400, 429], 'the fourth attempt in a minute is refused before it is tried')
  t.equal((await c.get('/setup')).status, 200, 'pages still load')
})
