import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type Page } from 'playwright-core'
import t from 'tap'
import { unbase32 } from '../../../hal/crypto/base32.ts'
import { systemClock } from '../../../hal/clock.ts'
import { loadConfigFile } from '../../../firmware/config/load.ts'
import { ensureDevSmime } from '../../../firmware/keys/dev-smime.ts'
import { DEV_SMIME_LABEL } from '../../../firmware/keys/labels.ts'
import { hsmFromConfig } from '../../../firmware/keys/service.ts'
import { accountTool, adminBox, freshCodes, oneTimeCodeIn } from '../../helpers/admin.ts'
import { submitter } from '../../helpers/daemon.ts'
import { smtpError, startReceiver, until } from '../../helpers/receiver.ts'
import { trailText } from '../../helpers/audit.ts'

/**
 * The admin page in a real browser (Debian's Chromium, headless, driven by
 * playwright-core) against the real daemon: what a person sees and clicks.
 * Screenshots of the dashboard and the queue go to .tap/admin-screenshots/.
 */
const SHOTS = fileURLToPath(new URL('../../../.tap/admin-screenshots/', import.meta.url))
const ADMIN = { name: 'wang', password: 'Tea-kettle 7 orchids' }
const SECOND = { name: 'mei', password: 'Lotus-pond 4 frogs' }
const XSS = '<img src=x onerror=alert(1)>'

/**
 * A screenshot for the README's pictures; headless Chromium on a loaded machine sometimes answers
 * "Unable to capture screenshot", so it is tried again (the pictures are not what the tests judge).
 */
async function shot(page: Page, name: string, fullPage = false): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      return void (await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage }))
    } catch (err) {
      if (i >= 3 || !/Unable to capture screenshot/.test((err as Error).message)) throw err
      await new Promise((r) => setTimeout(r, 500))
    }
  }
}

t.test('the admin page in Chromium: first boot, login, dashboard, queue, lockout, XSS', async (t) => {
  const rx = await startReceiver(t, { onRcptTo: (a) => (a.startsWith('stuck') ? smtpError(451, `4.2.0 busy ${XSS.replace('1', '2')} try later`) : undefined) })
  // The statements are S/MIME-signed with a certificate in the HSM, as on a real box, so the dashboard has one to show.
  const box = await adminBox(
    t,
    {
      admin: { loginAttemptsPerMinute: 500, loginDelayMs: 50 },
      delivery: { routes: [{ domain: '*', host: '127.0.0.1', port: rx.port }] },
      signing: { domains: [{ domain: 'bank.example', smimeKey: DEV_SMIME_LABEL }] },
    },
    undefined,
    async (path, dataDir) => {
      const hsm = hsmFromConfig(loadConfigFile(path), systemClock)
      await hsm.open()
      await ensureDevSmime(hsm, { dataDir, address: 'statements@bank.example' }).finally(() => hsm.close())
    },
  )
  const code = freshCodes()
  const browser: Browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  })
  t.teardown(() => browser.close())
  mkdirSync(SHOTS, { recursive: true })
  const dialogs: string[] = []
  const newPage = async (): Promise<Page> => {
    // The box's own certificate is trusted by the test, not by the browser: its errors are ignored here only.
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 }, locale: 'zh-TW' })
    const page = await ctx.newPage()
    page.on('dialog', (d) => {
      dialogs.push(d.message())
      void d.dismiss()
    })
    return page
  }
  const enrol = async (page: Page) => {
    const key = (await page.locator('code.secret').textContent())!.replace(/\s/g, '')
    const secret = unbase32(key.toLowerCase())!
    t.ok(await page.locator('.qr svg').count(), 'a QR code to scan')
    await page.fill('input[name=code]', await code(secret))
    await page.click('button')
    return secret
  }
  const logIn = async (page: Page, who: { name: string; password: string }, secret: Buffer) => {
    await page.goto(new URL('/login', box.url).href)
    await page.fill('input[name=name]', who.name)
    await page.fill('input[name=password]', who.password)
    await page.fill('input[name=code]', await code(secret))
    await page.click('main button')
  }

  const page = await newPage()
  let adminSecret: Buffer
  await t.test('first boot: setup code, administrator, TOTP, recovery codes; the code works once', async (t) => {
    await page.goto(box.url)
    t.match(page.url(), /\/setup$/)
    await page.fill('input[name=code]', readFileSync(join(box.dataDir, 'admin', 'setup-code'), 'utf8').trim())
    await page.fill('input[name=name]', ADMIN.name)
    await page.fill('input[name=password]', ADMIN.password)
    await shot(page, 'setup')
    await page.click('main button')
    await page.waitForURL(/\/enrol$/)
    await shot(page, 'enrol')
    adminSecret = await enrol(page)
    t.equal(await page.locator('ul.codes li').count(), 10, 'ten recovery codes')
    await page.goto(new URL('/setup', box.url).href)
    t.match(page.url(), /\/login$/, 'the setup page is gone')
  })

  await t.test('login; the dashboard shows the queue after a batch, and the egress chart has points', async (t) => {
    await logIn(page, ADMIN, adminSecret)
    await page.waitForURL(/\/dashboard$/)
    const smtp = await submitter(t, box.dataDir, box.submissionPort)
    for (let i = 0; i < 20; i++)
      await smtp.sendMail({
        from: 'statements@bank.example',
        to: i === 0 ? 'stuck@example.net' : `c${i}@example.net`,
        subject: 'statement',
        text: 'statement '.repeat(500),
        headers: { 'X-Statement-ID': i === 0 ? `S-${XSS}` : `S-${i}`, 'X-Statement-Class': 'monthly', 'X-Statement-Batch': '2026-11' },
      })
    // The series takes a point every 10 s.
    await page.waitForTimeout(11_000)
    await page.reload()
    // (The page's CSP forbids evaluating strings, so the wait is on an attribute app.js sets.)
    await page.locator('#chart-bits[data-points]:not([data-points="0"])').waitFor({ timeout: 20_000 })
    t.ok(await page.locator('#chart-bits canvas').count(), 'uPlot drew the egress chart')
    const queueCard = await page.locator('.card').first().textContent()
    t.match(queueCard, /total\s*\d+/, 'the queue by state')
    const hsmCard = await page.locator('.card', { has: page.locator('h2', { hasText: /^HSM$/ }) }).textContent()
    t.match(hsmCard, /connected/, "the HSM token's state")
    t.match(
      hsmCard,
      new RegExp(`${DEV_SMIME_LABEL.replace('/', '\\/')}\\s*\\d{4}-\\d\\d-\\d\\d\\s*7[23]\\d`),
      'the signing certificate with its expiry and the days left',
    )
    await shot(page, 'dashboard', true)
  })

  await t.test('queue: hold, release, remove with a reason; each appears in the audit search; XSS renders as text', async (t) => {
    await page.goto(new URL('/queue?state=deferred', box.url).href)
    const link = page.locator('main table a').first()
    await link.waitFor({ timeout: 20_000 })
    const id = (await link.textContent())!
    await shot(page, 'queue', true)
    await link.click()
    t.match(await page.locator('main').textContent(), `S-${XSS}`, 'the statement id shows as text')
    for (const action of ['hold', 'release', 'hold']) {
      // A hold waits for an attempt in flight to end: the page says so, and the operator tries again.
      for (let i = 0; i < 40; i++) {
        await page.click(`form[action$="/${action}"] button`)
        if (!/being delivered right now/.test((await page.locator('.notice').textContent()) ?? '')) break
        await page.waitForTimeout(250)
      }
      t.match(await page.locator('.notice').textContent(), /done/, `${action}: done`)
    }
    await page.fill('form[action$="/remove"] input[name=reason]', `customer asked ${XSS}`)
    await page.click('form[action$="/remove"] button')
    t.match(await page.locator('main').textContent(), /Removed from the queue/)
    await page.goto(new URL(`/audit?id=${encodeURIComponent(id)}`, box.url).href)
    const trail = (await page.locator('main table').textContent())!
    for (const a of ['queue.hold', 'queue.release', 'queue.remove']) t.match(trail, a, `${a} in the trail`)
    t.match(trail, 'admin-page')
    t.same(dialogs, [], 'no script from mail ever ran')
  })

  let second: { page: Page; secret: Buffer } | undefined
  await t.test(
    '#31: the second administrator, enrolled at the console, sets their own password; five wrong ones lock them; an alarm; the console unlocks',
    async (t) => {
      const enrolment = oneTimeCodeIn(await accountTool(box.configPath, 'enrol', SECOND.name))
      const other = await newPage()
      await other.goto(new URL('/welcome', box.url).href)
      await other.fill('input[name=name]', SECOND.name)
      await other.fill('input[name=code]', enrolment)
      await other.fill('input[name=password]', SECOND.password)
      await other.click('main button')
      await other.waitForURL(/\/enrol$/)
      const secret = await enrol(other)
      for (let i = 0; i < 5; i++) {
        await other.goto(new URL('/login', box.url).href)
        await other.fill('input[name=name]', SECOND.name)
        await other.fill('input[name=password]', 'wrong password 9!')
        await other.fill('input[name=code]', '000000')
        await other.click('main button')
        t.match(await other.locator('.notice').textContent(), /not accepted/)
      }
      await other.goto(new URL('/login', box.url).href)
      await other.fill('input[name=name]', SECOND.name)
      await other.fill('input[name=password]', SECOND.password)
      await other.fill('input[name=code]', '000000')
      await other.click('main button')
      t.match(await other.locator('.notice').textContent(), /not accepted/, 'locked: the right password is refused too')
      await page.goto(new URL('/logins', box.url).href)
      const review = (await page.locator('main').textContent())!
      t.match(review, new RegExp(`${SECOND.name}127\\.0\\.0\\.1[0-9]`), 'the failed-logins page lists them')
      t.match(review, new RegExp(`${SECOND.name}127\\.0\\.0\\.1 ×5`), 'and the lock, with where the failures came from')
      await page.goto(new URL('/dashboard', box.url).href)
      t.match(await page.locator('.alarms').textContent(), new RegExp(`account ${SECOND.name} locked after failed logins from 127\\.0\\.0\\.1 ×5`), 'an alarm')
      // With two administrators and one locked, nobody can approve an unlock on the page: the console does it,
      // with a code from the account's own authenticator.
      await accountTool(box.configPath, 'unlock', SECOND.name, '--code', await code(secret))
      await logIn(other, SECOND, secret)
      await other.waitForURL(/\/dashboard$/)
      t.pass('unlocked at the console: the person logs in')
      second = { page: other, secret }
    },
  )

  await t.test(
    'S7: a policy change proposed on the generated form, refused to its author, approved by the other with TOTP, in force at once; rolled back',
    async (t) => {
      // mei proposes; wang approves (wang's last code is a minute old by now: no wait for the next one).
      const smtp = await submitter(t, box.dataDir, box.submissionPort)
      const send = () =>
        smtp.sendMail({ from: 'statements@bank.example', to: 'c@example.net', subject: 'statement', text: 'statement' }).then(
          () => 'accepted',
          (err: { responseCode?: number; response?: string }) => `${err.responseCode} ${err.response}`,
        )
      t.equal(await send(), 'accepted', 'the policy in force lets the mail through')
      const author = second!.page
      await author.goto(new URL('/config', box.url).href)
      const profiles = [{ name: 'firm', accounts: ['firm-statements'], domains: ['firm.example'] }]
      await author.fill('textarea[name="c:policy.profiles"]', JSON.stringify(profiles))
      await author.fill('form.config input[name=reason]', 'only firm.example may send (ticket 5120)')
      await author.click('form.config > button')
      await author.waitForURL(/\/config\/proposals\/[0-9a-f]{12}$/)
      const rows = author.locator('main table tbody tr')
      t.equal(await rows.count(), 1, 'the whole form was sent, and only the key changed is in the diff')
      t.match(await rows.first().textContent(), /policy\.profiles.*at once/)
      t.equal(await author.locator('form[action$="/approve"]').count(), 0, 'its author gets no approve button')
      await page.goto(author.url())
      await page.fill('input[name=code]', await code(adminSecret))
      await page.click('form[action$="/approve"] button')
      t.match(await page.locator('.notice').textContent(), /Applied as version 2\./)
      t.match(await send(), /^550 550 5\.7\.1 EPOLICY_SENDER/, "the same mail, refused with the new rule's code, without a restart")

      // Rollback in one step: mei restores version 1, wang approves.
      await author.goto(new URL('/config', box.url).href)
      const v1 = author.locator('form[action="/config/restore"]:has(input[name=version][value="1"])')
      await v1.locator('input[name=reason]').fill('the rule stopped the month-end batch')
      await v1.locator('button').click()
      await author.waitForURL(/\/config\/proposals\/[0-9a-f]{12}$/)
      t.match(await author.locator('main').textContent(), /restore version 1: the rule stopped the month-end batch/)
      await page.goto(author.url())
      await page.fill('input[name=code]', await code(adminSecret))
      await page.click('form[action$="/approve"] button')
      t.match(await page.locator('.notice').textContent(), /Applied as version 3\./)
      t.equal(await send(), 'accepted', 'acceptance restored')

      // The audit trail: the proposals, their approvals, and each change with its before and after.
      await until(() => trailText(join(box.dataDir, 'audit')).includes('"reason":"version 3: restore version 1'), 10_000)
      const records = trailText(join(box.dataDir, 'audit'))
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>)
      const proposal = records.filter((r) => r.type === 'config.proposal').map((r) => `${String(r.action)} by ${String(r.who)}`)
      t.same(proposal, ['proposed by mei', 'approved by wang', 'proposed by mei', 'approved by wang'])
      const changed = records.filter((r) => r.type === 'config.changed' && String(r.who).includes('approved by'))
      t.match(changed[0], {
        who: 'mei, approved by wang',
        reason: 'version 2: only firm.example may send (ticket 5120)',
        before: { 'policy.profiles': [] },
        after: { 'policy.profiles': [{ name: 'firm', domains: ['firm.example'] }] },
      })
      t.match(changed[1], { reason: /^version 3: restore version 1/, after: { 'policy.profiles': [] } })
      t.match(
        records.filter((r) => r.type === 'config.version').map((r) => r.number),
        [1, 2, 3],
      )
    },
  )
})
