import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { join } from 'node:path'
import t from 'tap'
import { buildBox } from '../../firmware/box.ts'
import { parseConfig, type Config } from '../../firmware/config/load.ts'
import { LIVE_KEYS } from '../../firmware/config/schema.ts'
import { valueAt } from '../../firmware/config/store.ts'
import { controlRequests } from '../../firmware/control/server.ts'
import { STAGE_ORDER } from '../../firmware/pipeline/chain.ts'
import { ACCOUNT, accountHash, tempDir } from '../helpers/box.ts'
import { logSink } from '../helpers/logs.ts'
import { productBox, submit } from '../helpers/product.ts'
import { startReceiver, smtpError, until } from '../helpers/receiver.ts'

// #34: the product's own wiring (buildBox), as main runs it: the chain in STAGE_ORDER, one
// reading of each mail, the M8 loop guard after signing, and the live configuration.

type T = { teardown(fn: () => unknown): void }

const CLASS = 'monthly-high-value'

/** A box with tracking, read receipts (MDN), S/MIME and DKIM on, its MX and the firm's notice mailbox on loopback. */
async function withReceivers(t: T) {
  const mx = await startReceiver(t, { onRcptTo: (a) => (a.startsWith('gone') ? smtpError(550, '5.1.1 no such user') : undefined) })
  const firm = await startReceiver(t, { host: '127.0.0.2' })
  const built = await productBox(
    t,
    {
      policy: { profiles: [{ name: 'statements', accounts: [ACCOUNT.name], domains: ['bank.example'], attachmentTypes: [], statementClass: CLASS }] },
      signing: { domains: [{ domain: 'bank.example', smimeKey: 'smime/bank', dkimSelector: 'sg1' }] },
      reports: { tracking: { listen: '127.0.0.1:0', baseUrl: 'https://track.bank.example' } },
      returnPath: { listen: '127.0.0.1:0', domains: [{ from: 'bank.example', returnPath: 'rp.bank.example' }], readReceipts: [{ statementClass: CLASS }] },
      delivery: {
        routes: [
          { domain: 'example.net', host: '127.0.0.1', port: mx.port },
          { domain: 'bank.example', host: '127.0.0.2', port: firm.port },
        ],
        notifyAddress: 'ops@bank.example',
      },
    },
    { smime: true },
  )
  return {
    ...built,
    mx,
    firm,
    raw: built.raw as typeof built.raw & {
      policy: { profiles: Record<string, unknown>[] }
      submission: { accounts: unknown[] }
      delivery: { routes: unknown[] }
    },
  }
}

const statement = (id: string, extra = '') =>
  `From: statements@bank.example\nTo: customer@example.net\nSubject: statement\nX-Statement-ID: ${id}\nMIME-Version: 1.0\n${extra}` +
  'Content-Type: multipart/alternative; boundary="a"\n\n--a\nContent-Type: text/plain\n\nSee https://bank.example/s\n' +
  '--a\nContent-Type: text/html; charset=utf-8\n\n<html><body><a href="https://bank.example/s">statement</a></body></html>\n--a--\n'

/** Counts what `fn` does on a diagnostics channel of the MIME reader. */
async function counting<T>(name: string, fn: () => Promise<T>): Promise<{ n: number; result: T }> {
  let n = 0
  const count = () => n++
  subscribe(name, count)
  try {
    return { result: await fn(), n }
  } finally {
    unsubscribe(name, count)
  }
}

t.test('#34: the chain main runs is the one STAGE_ORDER lists', async (t) => {
  const { log } = logSink()
  const box = buildBox(parseConfig({ dataDir: tempDir(t) }), { log })
  t.same(box.chain.names, [...STAGE_ORDER])
})

t.test('#34 parse once, M8, S7: through the product chain with tracking and MDN on', async (t) => {
  const { box, mx, firm, raw, tls } = await withReceivers(t)

  await t.test('one reading before the 250 (in the inspection worker): none on the main thread, whatever the stages edit', async (t) => {
    const { n, result } = await counting('statement-gateway:mime.parse', () => submit(box, tls, 'customer@example.net', statement('S-1')))
    t.equal(result, 250)
    t.equal(n, 0, 'tracking, the read-receipt request and signing read the facts the policy stage carried')
    await until(() => mx.received.length === 1)
    const out = mx.received[0]!.data.toString('latin1')
    t.match(out, /^Disposition-Notification-To: <r-[^@>]+@rp\.bank\.example>/m, 'the MDN request (M11)')
    t.match(out, /Content-Type: multipart\/signed; protocol="application\/pkcs7-signature"/, 'S/MIME over the edited mail')
  })

  await t.test('M8: a multipart/report, S/MIME-signed by the box and bounced, gets no notice', async (t) => {
    const report =
      'From: statements@bank.example\nTo: gone@example.net\nSubject: report\nX-Statement-ID: S-2\nMIME-Version: 1.0\n' +
      'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\n\n--r\nContent-Type: text/plain\n\nreport\n' +
      '--r\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; bank.example\n\nFinal-Recipient: rfc822; x@example.net\nAction: failed\nStatus: 5.0.0\n\n--r--\n'
    const plain = statement('S-3').replace('To: customer@example.net', 'To: gone@example.net')
    t.equal(await submit(box, tls, 'gone@example.net', report), 250)
    t.equal(await submit(box, tls, 'gone@example.net', plain), 250)
    // The plain statement's notice comes; the report's (queued first) would have come before it.
    await until(() => firm.received.length >= 1, 30_000)
    await new Promise((r) => setTimeout(r, 500))
    t.equal(firm.received.length, 1, 'one notice: for the statement, none for the report (whose header says multipart/signed by now)')
    t.match(firm.received[0]!.data.toString(), /S-3/)
  })

  await t.test('S11: box.status on the control socket, assembled from the components (control/status.ts)', async (t) => {
    const [reply] = await controlRequests(join(box.config.dataDir, 'control.sock'), [{ cmd: 'box.status' }])
    t.ok(reply!.ok, 'answered')
    const status = (reply as { result: Record<string, Record<string, unknown>> }).result
    t.equal(status.pid, process.pid, 'this process: the box built in it')
    t.type(status.spool!.total, 'number', 'the spool as it counts')
    t.type(status.memory!.rss, 'number')
    t.ok('submission' in status.memory!, "what mail in flight holds of submission's budget")
    t.type(status.delivery!.inFlight, 'number')
    t.same(Object.keys(status.admin!), ['clientErrors'], 'the admin page, built after the control socket, is reported')
    t.ok(Array.isArray((status.hsm as { keys?: unknown }).keys), 'the HSM check')
    t.type(status.eventLoop!.p99Ms, 'number')
  })

  await t.test('every live key, changed through the store, reaches the component that acts on it without a restart', async (t) => {
    const holders = new Set(box.store.subscriptions.flatMap((s) => s.keys))
    t.same(
      LIVE_KEYS.filter((k) => !holders.has(k)),
      [],
      'each LIVE_KEYS entry has a holder or a reader',
    )
    const changed: Record<string, unknown> = {
      policy: { profiles: [{ ...raw.policy.profiles[0], tracking: true }] },
      'submission.accounts': [...raw.submission.accounts, { name: 'second', passwordHash: await accountHash() }],
      'submission.allowFrom': ['127.0.0.0/8', '10.1.0.0/16'],
      'delivery.egress': [{ address: '127.0.0.13', ehloName: 'only.localhost', weight: 1, bitsPerSecond: 800_000 }],
      'delivery.routes': [...raw.delivery.routes, { domain: 'example.org', host: '127.0.0.1', port: mx.port, tls: 'opportunistic' }],
      'delivery.requireTls': ['example.org'],
      'delivery.smtpPort': 2525,
      'delivery.bandwidthBitsPerSecond': 20_000_000,
      'delivery.burstBytes': 65_536,
      'delivery.perDestinationMessagesPerSecond': 5,
      'delivery.messagesPerConnection': 10,
      'delivery.retrySeconds': [7],
      'delivery.maxAgeSeconds': 3600,
      'delivery.blockPauseSeconds': 60,
      'delivery.throttlePauseSeconds': 30,
      'delivery.timeouts': { connectMs: 5000, greetingMs: 6000, commandMs: 7000, dataMs: 8000 },
      'delivery.notifyAddress': 'paper@bank.example',
    }
    // What each component acts on now, as it shows it (not what the store holds).
    const inForce = () => ({ policy: box.chain.policy.policy, submission: box.submission.access, delivery: box.delivery.settings })
    for (const key of LIVE_KEYS) {
      const [section, field] = key.split('.') as [keyof typeof raw, string | undefined]
      const value = changed[key]
      const next = field ? { ...raw, [section]: { ...(raw[section] as object), [field]: value } } : { ...raw, [section]: value }
      await box.store.set(parseConfig(next))
      t.same(valueAt(inForce() as unknown as Config, key), valueAt(parseConfig(next), key), `${key} reached its component`)
    }
    // The named bug: a profile's tracking, approved on the page, is in force for the next mail.
    await box.store.set(parseConfig({ ...raw, policy: changed.policy }))
    t.equal(await submit(box, tls, 'customer@example.net', statement('S-4')), 250)
    await until(() => mx.received.some((m) => m.data.includes('X-Statement-ID: S-4')), 30_000)
    const tracked = mx.received.find((m) => m.data.includes('X-Statement-ID: S-4'))!.data.toString('latin1')
    t.match(
      Buffer.from(
        tracked
          .split(/\r\n\r\n/)
          .slice(1)
          .join('\r\n\r\n'),
      ).toString(),
      /./,
      'delivered',
    )
    t.ok(/track\.bank\.example/.test(decodedParts(tracked)), 'the links and the image point at the tracking listener')
  })
})

/** Every base64 body of a delivered mail, decoded (the rewritten HTML part is base64 inside the signed entity). */
function decodedParts(raw: string): string {
  return [...raw.matchAll(/Content-Transfer-Encoding: base64\r\n(?:[^\r\n]+\r\n)*\r\n([A-Za-z0-9+/=\r\n]+)/g)]
    .map((m) => Buffer.from(m[1]!, 'base64').toString('latin1'))
    .join('\n')
}
