import t from 'tap'
import { ConfigStore } from '../../../firmware/config/store.ts'
import { parseConfig } from '../../../firmware/config/load.ts'
import { BOX_KEYS } from '../../../firmware/keys/manifest.ts'
import { decodedText, parseMessage, walk } from '../../../firmware/mime/tree.ts'
import type { Envelope, Submitted } from '../../../firmware/pipeline/handoff.ts'
import { summary } from '../../../firmware/ledger/queries.ts'
import { TrackingTokens } from '../../../firmware/ledger/tokens.ts'
import { agentClass, TrackingListener } from '../../../firmware/ledger/tracking.ts'
import { TrackingStage } from '../../../firmware/pipeline/stages/tracking.ts'
import { logSink } from '../../helpers/logs.ts'
import { ledgerRig, submitted, attempt } from '../../helpers/reports.ts'
import { opensslVerify, pythonDkimVerify, signingSetup } from '../../helpers/signing.ts'

const BASE = 'https://track.bank.example'
const PROFILE = { name: 'securities', accounts: ['firm-statements'], domains: ['bank.example'], tracking: true }
const HTML_MAIL =
  'From: statements@bank.example\r\nTo: a@example.net\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="a"\r\n\r\n' +
  '--a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYour statement: https://bank.example/s/1\r\n' +
  '--a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><a href="https://bank.example/s/1">statement</a> <a href="https://bank.example/help">help</a></body></html>\r\n' +
  '--a--\r\n'

const mail = (over: Partial<Envelope> = {}, message = HTML_MAIL): Submitted => ({
  envelope: {
    id: 'Q1',
    mailFrom: 'statements@bank.example',
    rcptTo: ['a@example.net'],
    account: 'firm-statements',
    clientAddress: '127.0.0.1',
    tls: undefined,
    receivedAt: Date.now(),
    profile: 'securities',
    ...over,
  },
  message: Buffer.from(message),
})

/** The tracking URLs in a rewritten mail's HTML part: the links in order, then the image. */
function trackingUrls(message: Buffer): { clicks: string[]; open: string } {
  const html = [...walk(parseMessage(message))].find((n) => n.mime === 'text/html')!
  const text = decodedText(message, html)
  const clicks = [...text.matchAll(/href="([^"]*)"/g)].map((m) => m[1]!)
  return { clicks, open: /<img src="([^"]*)"/.exec(text)![1]! }
}

t.test('the user agent class: image proxies, scanners, mail clients, browsers', async (t) => {
  const cases: [string | undefined, string, string?][] = [
    ['Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)', 'proxy'],
    ['YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html', 'proxy'],
    ['Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)', 'client'],
    ['Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)', 'client'],
    ['Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.3.0', 'client'],
    ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36', 'browser'],
    ['Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1', 'browser'],
    ['Mozilla/5.0 (compatible; Barracuda Sentinel)', 'scanner'],
    ['python-requests/2.32', 'scanner'],
    ['curl/8.5.0', 'scanner'],
    ['Mozilla/5.0 (Windows NT 10.0) Chrome/130.0 Safari/537.36', 'scanner', 'HEAD'],
    [undefined, 'unknown'],
    ['SomethingElse/1.0', 'unknown'],
  ]
  for (const [ua, want, method] of cases) t.equal(agentClass(ua, method), want, `${method ?? 'GET'} ${ua ?? '(none)'}`)
})

t.test(
  'M9: the pixel and a link fetched by a real HTTP client land in the ledger; forged tokens, a token for another use and URL-encoded targets get a bare 404',
  async (t) => {
    const rig = await ledgerRig(t, { tracking: { baseUrl: BASE, listen: '127.0.0.1:0' } }, { policy: { profiles: [PROFILE] } })
    const tokens = new TrackingTokens(rig.hsm)
    const { log } = logSink()
    const listener = new TrackingListener({ config: rig.config, tokens, events: rig.trail, log })
    await listener.start()
    t.teardown(() => listener.stop())
    const origin = `http://127.0.0.1:${listener.address!.port}`
    const local = (url: string) => url.replace(BASE, origin)

    rig.clock.value = Date.parse('2026-11-05T02:00:00Z')
    await rig.emit(...submitted('Q1', ['a@example.net'], { batch: 'NOV' }), attempt('Q1', 'delivered', ['a@example.net'], '250 ok'))
    const stage = new TrackingStage({ store: new ConfigStore(rig.config), tokens, log })
    const out = await stage.process(mail())
    const urls = trackingUrls(out.message)
    t.equal(urls.clicks.length, 2)
    t.ok(
      [...urls.clicks, urls.open].every((u) => u.startsWith(`${BASE}/`)),
      'links and image point at the tracker',
    )

    const browser = { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36' }
    // The image proxy fetches the image on arrival; then the customer opens the mail and clicks.
    const proxied = await fetch(local(urls.open), { headers: { 'user-agent': 'Mozilla/5.0 (via ggpht.com GoogleImageProxy)' } })
    t.equal(proxied.status, 200)
    const pixel = await fetch(local(urls.open), { headers: browser })
    t.equal(pixel.headers.get('content-type'), 'image/gif')
    t.match(pixel.headers.get('cache-control'), /no-store/, 'never cached: every open reaches the box')
    const gif = Buffer.from(await pixel.arrayBuffer())
    t.same([gif.subarray(0, 6).toString(), gif.readUInt16LE(6), gif.readUInt16LE(8)], ['GIF89a', 1, 1], 'a 1×1 GIF')
    const scanned = await fetch(local(urls.clicks[1]!), { redirect: 'manual', headers: { 'user-agent': 'Mozilla/5.0 (compatible; Barracuda Sentinel)' } })
    t.equal(scanned.status, 302, "a scanner is redirected too (it is the customer's mail gateway) but counts as no click")
    const click = await fetch(local(urls.clicks[1]!), { redirect: 'manual', headers: browser })
    t.equal(click.status, 302)
    t.equal(click.headers.get('location'), 'https://bank.example/help', 'to the link sealed in the token')
    t.equal(click.headers.get('referrer-policy'), 'no-referrer', 'the token does not travel on to the firm')

    // What must fail.
    const token = urls.clicks[0]!.slice(`${BASE}/c/`.length)
    const flipped = token.slice(0, 20) + (token[20] === 'A' ? 'B' : 'A') + token.slice(21)
    const openToken = urls.open.slice(`${BASE}/o/`.length)
    const bad: [string, string, RequestInit?][] = [
      ['a forged token', `/c/${flipped}`],
      ["the image's token used as a link", `/c/${openToken}`],
      ["a link's token used as the image", `/o/${token}`],
      ['a URL-encoded redirect target', `/c/${encodeURIComponent('https://evil.example/phish')}`],
      ['a plain path', '/c/https://evil.example/'],
      ['another path', `/x/${token}`],
      ['a POST', `/c/${token}`, { method: 'POST' }],
      ['the root', '/'],
    ]
    for (const [what, path, init] of bad) {
      const r = await fetch(origin + path, { redirect: 'manual', ...init })
      t.equal(r.status, 404, what)
      t.equal(await r.text(), 'not found\n', `${what}: no details`)
      t.equal(r.headers.get('location'), null)
    }
    const withQuery = await fetch(`${local(urls.clicks[0]!)}?url=https%3A%2F%2Fevil.example%2F&redirect=https://evil.example/`, { redirect: 'manual' })
    t.equal(withQuery.headers.get('location'), 'https://bank.example/s/1', 'the query string changes nothing')

    await rig.trail.flush()
    await rig.ledger.caughtUp()
    t.match(
      (await summary(rig.ledger.store, {}, ['batch']))[0],
      { batch: 'NOV', opened: 1, openedByProxy: 1, clicked: 1 },
      'one open (the proxy apart), one click',
    )
    await listener.stop()
    await rig.trail.flush()
    const refused = rig.records().filter((r) => r.type === 'tracking.refused')
    t.match(refused, [{ reason: 'unknown-token' }, { reason: 'forged-token' }], 'refusals reported, counted')
    t.equal(
      refused.reduce((n, r) => n + Number(r.count), 0),
      5,
      'the five that reached the token check (the root, another path and a POST are plain 404s)',
    )
  },
)

t.test('only for a profile that asks, one recipient and a base URL; the rewrite comes before signing, and both signatures verify', async (t) => {
  const s = await signingSetup(t)
  await s.hsm.ensureKeys(BOX_KEYS)
  const tokens = new TrackingTokens(s.hsm)
  const { log } = logSink()
  const stage = (profile: Record<string, unknown>, baseUrl = BASE) =>
    new TrackingStage({
      store: new ConfigStore(parseConfig({ reports: { tracking: { baseUrl } }, policy: { profiles: [{ ...PROFILE, ...profile }] } })),
      tokens,
      log,
    })
  const same = async (st: TrackingStage, m: Submitted) => (await st.process(m)).message.equals(m.message)
  t.ok(await same(stage({ tracking: false }), mail()), 'off by default in a profile')
  t.ok(await same(stage({}, ''), mail()), 'no base URL: nothing rewritten')
  t.ok(await same(stage({}), mail({ rcptTo: ['a@example.net', 'b@example.net'] })), 'two recipients: one body cannot tell who opened')
  t.ok(await same(stage({}), mail({ profile: undefined })), 'a mail no profile took')
  t.ok(await same(stage({}), mail({ kind: 'dsn' })), 'a status notification')
  const plain = 'From: statements@bank.example\r\nTo: a@example.net\r\nSubject: s\r\n\r\nhttps://bank.example/s/1\r\n'
  t.ok(await same(stage({}), mail({}, plain)), 'a plain-text mail keeps every byte')

  const rewritten = (await stage({}).process(mail())).message
  const signed = await s.sign(rewritten, ['a@example.net'])
  t.ok((await opensslVerify(s.dir, s.ca.cert, signed)).ok, 'openssl cms -verify accepts the rewritten, signed mail')
  t.ok(await pythonDkimVerify(signed, await s.dkimRecord()), 'python3-dkim too')
  t.match(signed.toString('latin1'), /Content-Type: text\/html; charset=utf-8\r\nContent-Transfer-Encoding: base64/, 'the signed HTML is the rewritten one')
})

t.test('M11: a confirm-link class gets the confirmation link; its GET shows a button, only the POST confirms, a scanner never does', async (t) => {
  const rig = await ledgerRig(
    t,
    { tracking: { baseUrl: BASE, listen: '127.0.0.1:0' } },
    {
      policy: { profiles: [{ ...PROFILE, tracking: false }] },
      returnPath: {
        domains: [{ from: 'bank.example', returnPath: 'bounce.bank.example' }],
        readReceipts: [
          { statementClass: 'hv-confirm', readEvidence: 'confirm-link' },
          { statementClass: 'hv-open', readEvidence: 'open' },
        ],
      },
    },
  )
  const tokens = new TrackingTokens(rig.hsm)
  const { log } = logSink()
  const reads: [string, string][] = []
  const listener = new TrackingListener({ config: rig.config, tokens, events: rig.trail, log, onRead: async (id, ev) => void reads.push([id, ev]) })
  await listener.start()
  t.teardown(() => listener.stop())
  const origin = `http://127.0.0.1:${listener.address!.port}`
  const stage = new TrackingStage({ store: new ConfigStore(rig.config), tokens, log })

  t.equal(
    (await stage.process(mail({ statementClass: 'monthly' }))).message.toString(),
    HTML_MAIL,
    'no tracking in the profile, no read-receipt class: untouched',
  )
  const opened = await stage.process(mail({ id: 'QO', statementClass: 'hv-open' }))
  const openUrls = trackingUrls(opened.message)
  t.same(openUrls.clicks, ['https://bank.example/s/1', 'https://bank.example/help'], 'an open class gets the image; its links are left alone')

  rig.clock.value = Date.parse('2026-11-05T02:00:00Z')
  await rig.emit(...submitted('QC', ['a@example.net'], { statementId: 'S-QC' }), attempt('QC', 'delivered', ['a@example.net'], '250 ok'))
  const out = await stage.process(mail({ id: 'QC', statementClass: 'hv-confirm' }))
  const html = decodedText(
    out.message,
    [...walk(parseMessage(out.message))].find((n) => n.mime === 'text/html')!,
  )
  const confirm = /<a href="([^"]*)">確認收到對帳單/.exec(html)![1]!
  t.match(confirm, /^https:\/\/track\.bank\.example\/r\//)
  t.notMatch(html, /<img/, 'no image for a confirm-link class')
  const url = confirm.replace(BASE, origin)

  const scannerUa = { 'user-agent': 'Mozilla/5.0 (compatible; Barracuda Sentinel)' }
  const page = await fetch(url, { headers: scannerUa })
  t.equal(page.status, 200)
  t.match(await page.text(), /<form method="post">[^]*確認收到/, 'a page with a button')
  t.equal((await fetch(url, { method: 'POST', headers: scannerUa })).status, 200)
  t.same(reads, [], 'neither the GET nor a scanner’s POST confirms')
  const done = await fetch(url, { method: 'POST', headers: { 'user-agent': 'Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/130.0 Safari/537.36' } })
  t.match(await done.text(), /已確認收到/)
  t.same(reads, [['QC', 'confirm-link']], 'the customer’s press confirms')
  await rig.trail.flush()
  await rig.ledger.caughtUp()
  t.match(
    rig.records().filter((r) => r.type === 'tracking.confirm'),
    [{ id: 'QC', recipient: 0, agent: 'browser' }],
    'in the audit trail',
  )
  const [row] = await summary(rig.ledger.store, {}, [])
  t.match(row, { read: 1 }, 'the ledger counts the read')
  t.equal(
    (await fetch(`${origin}/o/${openUrls.open.slice(`${BASE}/o/`.length)}`, { headers: { 'user-agent': 'Mozilla/5.0 (via ggpht.com GoogleImageProxy)' } }))
      .status,
    200,
  )
  t.same(reads.length, 1, 'an image proxy’s fetch is no read')
})
