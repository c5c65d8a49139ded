import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import t from 'tap'
import { devHsm } from '../../helpers/hsm.ts'
import { deliveryRig, finals, route } from '../../helpers/delivery.ts'
import { smtpError, startReceiver, until } from '../../helpers/receiver.ts'

t.test('M2: connections come from all four egress addresses; mail arrives byte for byte; the spool is emptied', async (t) => {
  const { hsm } = await devHsm(t)
  const rx = await startReceiver(t)
  const rig = await deliveryRig(t, hsm, { ...route(rx.port), messagesPerConnection: 2 })
  const sent = []
  for (let i = 0; i < 24; i++) sent.push(await rig.enqueue(`c${i}@example.net`))
  await until(() => rx.received.length === 24)
  t.same(new Set(rx.connections), new Set(['127.0.0.11', '127.0.0.12', '127.0.0.13', '127.0.0.14']), 'all four source addresses used')
  for (const s of sent) {
    const got = rx.received.find((r) => r.rcptTo[0] === s.message.toString().match(/To: (\S+)/)![1])
    t.same(got?.data, s.message, 'byte-identical')
  }
  t.ok(
    rx.received.every((r) => r.tls),
    'opportunistic STARTTLS used',
  )
  t.match(new Set(rx.received.map((r) => r.ehlo)), new Set(['mta1.localhost', 'mta2.localhost', 'mta3.localhost', 'mta4.localhost']))
  await until(() => rig.spool.size === 0)
  t.equal(Object.values(finals(rig.events)).filter((o) => o === 'delivered').length, 24)
  const attempt = rig.events.find((e) => e.type === 'delivery.attempt')
  t.match(attempt, { outcome: 'delivered', mx: '127.0.0.1', sourceIp: /^127\.0\.0\.1[1-4]$/, reply: /^250 /, tls: /^TLSv1\.[23]$/ })
  // S11: bytes out per egress address; together, what passed the shared budget.
  const perEgress = rig.engine.egress.bytesSent()
  t.same(Object.keys(perEgress).sort(), ['127.0.0.11', '127.0.0.12', '127.0.0.13', '127.0.0.14'])
  t.ok(Object.values(perEgress).every((b) => b > 0))
  t.equal(
    Object.values(perEgress).reduce((a, b) => a + b, 0),
    rig.engine.limiter.passed,
  )
})

t.test('M8: 4xx defers with back-off, then delivers; 5xx bounces and the firm gets a DSN', async (t) => {
  const { hsm } = await devHsm(t)
  const firm = await startReceiver(t, { host: '127.0.0.2' })
  let first = true
  const rx = await startReceiver(t, {
    onData: (m) => {
      if (m.rcptTo[0] === 'later@example.net' && first) return ((first = false), smtpError(451, '4.3.0 try again later'))
      if (m.rcptTo[0] === 'gone@example.net') return smtpError(550, '5.1.1 no such user')
      return undefined
    },
  })
  const rig = await deliveryRig(t, hsm, {
    routes: [
      { domain: 'example.net', host: '127.0.0.1', port: rx.port },
      { domain: 'bank.example', host: '127.0.0.2', port: firm.port },
    ],
    notifyAddress: 'ops@bank.example',
    retrySeconds: [120, 600],
  })
  const later = await rig.enqueue('later@example.net')
  const gone = await rig.enqueue('gone@example.net', undefined, undefined, 'X-Statement-ID: S-2026-11-000042\r\n')
  await until(() => rig.spool.entry(later.id)?.state === 'deferred' && finals(rig.events)[gone.id] === 'bounced')
  t.match(rig.spool.entry(later.id), { attempts: 1, nextAttemptAt: rig.clock.now + 120_000 })
  await until(() => firm.received.length === 1)
  const dsn = firm.received[0]!
  t.equal(dsn.mailFrom, '', 'DSN sent with a null return path')
  t.match(dsn.data.toString(), /report-type=delivery-status/)
  t.match(dsn.data.toString(), new RegExp(`Statement ${gone.id} to g\\*\\*\\*\\*e@example\\.net was not delivered \\(bounced\\)`))
  t.match(dsn.data.toString(), /Status: 5\.1\.1/)
  t.match(
    dsn.data.toString(),
    /^Subject: Undelivered statement S-2026-11-000042 \(bounced\)\r$/m,
    "the firm's own statement id, to find the customer owed paper",
  )
  t.match(dsn.data.toString(), /Statement ID: S-2026-11-000042\r\n/)
  t.match(dsn.data.toString(), new RegExp(`X-Statement-Gateway-Queue-ID: ${gone.id}\r\nX-Statement-ID: S-2026-11-000042\r\nArrival-Date: `))
  t.notMatch(dsn.data.toString(), /Statement body/, 'no statement content in the DSN')
  rig.clock.now += 121_000
  await until(() => finals(rig.events)[later.id] === 'delivered')
  t.equal(rx.received.filter((r) => r.rcptTo[0] === 'later@example.net').length, 1)
})

t.test('M8: each recipient has its own outcome: a refused one bounces alone, a busy one is retried alone, none gets a second copy', async (t) => {
  const { hsm } = await devHsm(t)
  const firm = await startReceiver(t, { host: '127.0.0.2' })
  const rx = await startReceiver(t, {
    onRcptTo: (address, offered) => {
      if (address === 'gone@example.net') return smtpError(550, '5.1.1 no such user')
      if (address === 'busy@example.net' && offered === 1) return smtpError(450, '4.2.1 mailbox busy')
      return undefined
    },
  })
  const rig = await deliveryRig(t, hsm, {
    routes: [
      { domain: 'example.net', host: '127.0.0.1', port: rx.port },
      { domain: 'bank.example', host: '127.0.0.2', port: firm.port },
    ],
    notifyAddress: 'ops@bank.example',
    retrySeconds: [120],
  })
  const m = await rig.enqueue(['ok@example.net', 'gone@example.net', 'busy@example.net'])
  await until(() => rig.spool.entry(m.id)?.state === 'deferred')
  t.same(
    rx.received.map((r) => r.rcptTo),
    [['ok@example.net']],
    'first attempt: delivered to the accepted recipient only',
  )
  t.same(rig.spool.recipientsDone(m.id), { delivered: [0], bounced: [1] })
  await until(() => firm.received.length === 1)
  const dsn = firm.received[0]!.data.toString()
  t.match(dsn, /Final-Recipient: rfc822; gone@example\.net\r\nAction: failed\r\nStatus: 5\.1\.1/)
  t.notMatch(dsn, /Final-Recipient: rfc822; (ok|busy)@/, 'the DSN names only the refused recipient')
  t.ok(
    rig.events.some((e) => e.type === 'delivery.attempt' && e.outcome === 'bounced' && e.recipients.join() === 'gone@example.net'),
    'the refusal is its own attempt event',
  )

  rig.clock.now += 121_000
  await until(() => finals(rig.events)[m.id] === 'delivered')
  t.same(
    rx.received.map((r) => r.rcptTo),
    [['ok@example.net'], ['busy@example.net']],
    'the retry goes to the busy recipient alone',
  )
  t.equal(rx.commands.filter((c) => c === 'RCPT TO:ok@example.net').length, 1, 'the delivered recipient is never offered again')
  t.equal(firm.received.length, 1, 'no further DSN')
})

t.test('M8: when every recipient is refused the mail bounces, with one DSN naming them all', async (t) => {
  const { hsm } = await devHsm(t)
  const firm = await startReceiver(t, { host: '127.0.0.2' })
  const rx = await startReceiver(t, { onRcptTo: () => smtpError(550, '5.1.1 no such user') })
  const rig = await deliveryRig(t, hsm, {
    routes: [
      { domain: 'example.net', host: '127.0.0.1', port: rx.port },
      { domain: 'bank.example', host: '127.0.0.2', port: firm.port },
    ],
    notifyAddress: 'ops@bank.example',
  })
  const m = await rig.enqueue(['a@example.net', 'b@example.net'])
  await until(() => finals(rig.events)[m.id] === 'bounced' && firm.received.length === 1)
  t.equal(rx.received.length, 0)
  t.equal((firm.received[0]!.data.toString().match(/Final-Recipient:/g) ?? []).length, 2)
})

t.test('faults: connection dropped mid-DATA and a stalling receiver are deferred, not lost', async (t) => {
  const { hsm } = await devHsm(t)
  const dropper = await startReceiver(t, { dropDuringData: (n) => n === 1 })
  const staller = await startReceiver(t, { host: '127.0.0.3', onData: () => 'stall' })
  const rig = await deliveryRig(t, hsm, {
    routes: [
      { domain: 'drop.example', host: '127.0.0.1', port: dropper.port },
      { domain: 'stall.example', host: '127.0.0.3', port: staller.port },
    ],
    timeouts: { connectMs: 1000, greetingMs: 1000, commandMs: 1000, dataMs: 800 },
  })
  const a = await rig.enqueue('x@drop.example')
  const b = await rig.enqueue('y@stall.example')
  await until(() => rig.spool.entry(a.id)?.state === 'deferred' && rig.spool.entry(b.id)?.state === 'deferred')
  t.match(
    rig.events.find((e) => e.type === 'spool.deferred' && e.id === b.id),
    { reason: /timeout during data/ },
  )
  rig.clock.now += 61_000
  await until(() => finals(rig.events)[a.id] === 'delivered', 10_000)
  t.equal(dropper.received.length, 1, 'the retry got through')
})

t.test('MX: preference order with fallback when the best MX is down; null MX bounces at once', async (t) => {
  const { hsm } = await devHsm(t)
  const rx = await startReceiver(t, { host: '127.0.0.22' })
  const resolver = {
    async resolveMx(d: string) {
      if (d === 'nullmx.example') return [{ exchange: '', priority: 0 }]
      if (d === 'mx.example')
        return [
          { exchange: 'mx2.mx.example', priority: 20 },
          { exchange: 'mx1.mx.example', priority: 10 },
        ]
      throw Object.assign(new Error('no'), { code: 'ENOTFOUND' })
    },
    async resolve4(h: string) {
      if (h === 'mx1.mx.example') return ['127.0.0.21'] // nothing listens there
      if (h === 'mx2.mx.example') return ['127.0.0.22']
      throw Object.assign(new Error('no'), { code: 'ENOTFOUND' })
    },
    async resolve6(): Promise<string[]> {
      throw Object.assign(new Error('no'), { code: 'ENODATA' })
    },
  }
  const rig = await deliveryRig(t, hsm, { smtpPort: rx.port, requireTls: [] }, { resolver })
  const ok = await rig.enqueue('user@mx.example')
  const nul = await rig.enqueue('user@nullmx.example')
  await until(() => finals(rig.events)[ok.id] === 'delivered' && finals(rig.events)[nul.id] === 'bounced')
  t.match(
    rig.events.find((e) => e.type === 'delivery.attempt' && e.id === ok.id && e.outcome === 'delivered'),
    { mx: 'mx2.mx.example' },
  )
  t.match(
    rig.events.find((e) => e.type === 'spool.final' && e.id === nul.id),
    { reason: /^556 5\.1\.10 .*null MX/ },
  )
})

t.test('M7: the audit copy arrives byte-identical at the archive over the internal route, as its own delivery', async (t) => {
  const { hsm } = await devHsm(t)
  const rx = await startReceiver(t)
  const archive = await startReceiver(t, { host: '127.0.0.5' })
  const rig = await deliveryRig(t, hsm, { ...route(rx.port), auditCopy: { address: 'archive@bank.example', host: '127.0.0.5', port: archive.port } })
  const m = await rig.enqueue('customer@example.net')
  await until(() => rx.received.length === 1 && archive.received.length === 1)
  t.same(archive.received[0]!.data, rx.received[0]!.data, 'byte-identical (same signatures)')
  t.same(archive.received[0]!.rcptTo, ['archive@bank.example'])
  t.notOk(['127.0.0.11', '127.0.0.12', '127.0.0.13', '127.0.0.14'].includes(archive.received[0]!.remoteAddress), 'not from a public egress address')
  await until(() => finals(rig.events)[`${m.id}-a`] === 'delivered' && finals(rig.events)[m.id] === 'delivered')
})

t.test('M8: a message older than the maximum age expires and the firm is told', async (t) => {
  const { hsm } = await devHsm(t)
  const firm = await startReceiver(t, { host: '127.0.0.2' })
  const rig = await deliveryRig(t, hsm, {
    routes: [
      { domain: 'down.example', host: '127.0.0.9', port: 9 },
      { domain: 'bank.example', host: '127.0.0.2', port: firm.port },
    ],
    notifyAddress: 'ops@bank.example',
    maxAgeSeconds: 3600,
    timeouts: { connectMs: 500, greetingMs: 500, commandMs: 500, dataMs: 500 },
  })
  const m = await rig.enqueue('x@down.example')
  await until(() => rig.spool.entry(m.id)?.state === 'deferred')
  rig.clock.now += 3_601_000
  await until(() => finals(rig.events)[m.id] === 'expired' && firm.received.length === 1)
  t.match(firm.received[0]!.data.toString(), /\(expired\)/)
  t.match(firm.received[0]!.data.toString(), /Status: 4\.4\.7/)
})

t.test('an operator removes a held statement: the firm is told who and why, the record is shredded, nothing is sent', async (t) => {
  const { hsm } = await devHsm(t)
  const firm = await startReceiver(t, { host: '127.0.0.2' })
  const rx = await startReceiver(t)
  const rig = await deliveryRig(t, hsm, {
    routes: [
      { domain: 'example.net', host: '127.0.0.1', port: rx.port },
      { domain: 'bank.example', host: '127.0.0.2', port: firm.port },
    ],
    notifyAddress: 'ops@bank.example',
  })
  // Held before the engine could take it: enqueue straight into the spool and hold it at once.
  await rig.engine.stop()
  const m = await rig.enqueue('wrong.customer@example.net', undefined, undefined, 'X-Statement-ID: S-9\r\n')
  await rig.spool.hold(m.id)
  await t.rejects(rig.engine.remove('nope', 'alice', 'x'), /not held/)
  await rig.engine.remove(m.id, 'alice', 'addressed to the wrong customer')
  t.equal(rig.spool.entry(m.id), undefined)
  t.match(
    rig.events.find((e) => e.type === 'spool.final' && e.id === m.id),
    { outcome: 'removed', reason: 'removed by operator alice: addressed to the wrong customer' },
  )
  t.ok(rig.events.some((e) => e.type === 'spool.record_shredded' && e.id === m.id))
  const dsnEntry = rig.events.find((e) => e.type === 'spool.queued' && e.id !== m.id)
  t.ok(dsnEntry, 'a notice to the firm was queued')
  const dsn = await rig.spool.read((dsnEntry as { id: string }).id)
  t.match(dsn.message.toString(), /Subject: Undelivered statement S-9 \(removed\)/)
  t.match(
    dsn.message.toString(),
    /Final-Recipient: rfc822; wrong\.customer@example\.net\r\nAction: failed\r\nStatus: 5\.0\.0\r\nDiagnostic-Code: x-statement-gateway; removed by operator alice: addressed to the wrong customer/,
  )
  t.equal(rx.received.length, 0, 'nothing went to the customer')
})

t.test('M8 loop guards: no delivery notice about a mail that is automatic (Auto-Submitted, a report, a mailer-daemon sender)', async (t) => {
  const { hsm } = await devHsm(t)
  const rx = await startReceiver(t, { onRcptTo: () => smtpError(550, '5.1.1 user unknown') })
  const firm = await startReceiver(t, { host: '127.0.0.2' })
  const rig = await deliveryRig(t, hsm, {
    routes: [
      { domain: 'example.net', host: '127.0.0.1', port: rx.port },
      { domain: 'bank.example', host: '127.0.0.2', port: firm.port },
    ],
    notifyAddress: 'ops@bank.example',
  })
  const auto = await rig.enqueue('a@example.net', 'x\r\n', undefined, 'Auto-Submitted: auto-replied\r\n')
  const report = await rig.enqueue('b@example.net', 'x\r\n', undefined, 'Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n')
  const plain = await rig.enqueue('c@example.net', 'x\r\n', undefined, 'Auto-Submitted: no\r\n')
  await until(() => [auto, report, plain].every((m) => finals(rig.events)[m.id] === 'bounced'))
  await until(() => firm.received.length === 1)
  await new Promise((r) => setTimeout(r, 300))
  t.equal(firm.received.length, 1, 'one notice: for the mail that was not automatic')
  t.match(firm.received[0]!.data.toString(), /Final-Recipient: rfc822; c@example\.net/)
  t.equal(firm.received[0]!.mailFrom, '', 'sent from the null sender, so nothing answers it')
})

t.test('#34, M8: the loop guard uses what submission read; a signed report or auto-reply gets no notice, and no header is read for it', async (t) => {
  const { hsm } = await devHsm(t)
  const rx = await startReceiver(t, { onRcptTo: () => smtpError(550, '5.1.1 user unknown') })
  const firm = await startReceiver(t, { host: '127.0.0.2' })
  const rig = await deliveryRig(t, hsm, {
    routes: [
      { domain: 'example.net', host: '127.0.0.1', port: rx.port },
      { domain: 'bank.example', host: '127.0.0.2', port: firm.port },
    ],
    notifyAddress: 'ops@bank.example',
  })
  // By now the header says multipart/signed: only the envelope knows what the mail was.
  const signed = 'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary=s\r\n'
  let headerReads = 0
  const count = () => headerReads++
  subscribe('statement-gateway:mime.read-header', count)
  t.teardown(() => unsubscribe('statement-gateway:mime.read-header', count))
  const report = await rig.enqueue('a@example.net', 'x\r\n', undefined, signed, { tagged: true, isReport: true, autoSubmitted: undefined })
  const auto = await rig.enqueue('b@example.net', 'x\r\n', undefined, signed, { tagged: true, isReport: false, autoSubmitted: 'auto-generated' })
  const plain = await rig.enqueue('c@example.net', 'x\r\n', undefined, signed, { tagged: true, isReport: false, autoSubmitted: 'no' })
  await until(() => [report, auto, plain].every((m) => finals(rig.events)[m.id] === 'bounced'))
  await until(() => firm.received.length === 1)
  await new Promise((r) => setTimeout(r, 300))
  t.equal(firm.received.length, 1, 'one notice: for the mail that was not automatic')
  t.match(firm.received[0]!.data.toString(), /Final-Recipient: rfc822; c@example\.net/)
  t.equal(headerReads, 0, 'no header read at notice time')
})

t.test(
  'S7, M2, M3: routes, egress addresses and weights, the budget and the retry schedule approved on the admin page are in force for the next mail',
  async (t) => {
    const { hsm } = await devHsm(t)
    const first = await startReceiver(t)
    const second = await startReceiver(t, { onRcptTo: (a) => (a.startsWith('later') ? smtpError(451, '4.3.0 try later') : undefined) })
    const rig = await deliveryRig(t, hsm, { ...route(first.port) })
    t.equal(rig.engine.limiter.bytesPerSecond, 10_000_000 / 8)
    await rig.enqueue('c1@example.net')
    await until(() => first.received.length === 1)

    const { parseConfig } = await import('../../../firmware/config/load.ts')
    const next = parseConfig({
      ...rig.config,
      delivery: {
        ...rig.config.delivery,
        routes: [{ domain: '*', host: '127.0.0.1', port: second.port, tls: 'opportunistic' }],
        egress: [{ address: '127.0.0.13', ehloName: 'only.localhost', weight: 1, bitsPerSecond: 800_000 }],
        bandwidthBitsPerSecond: 20_000_000,
        retrySeconds: [7],
      },
    })
    await rig.engine.reconfigure(next)
    t.equal(rig.engine.limiter.bytesPerSecond, 20_000_000 / 8, 'the shared budget')
    for (let i = 2; i <= 4; i++) await rig.enqueue(`c${i}@example.net`)
    await until(() => second.received.length === 3)
    t.equal(first.received.length, 1, 'the old route gets nothing more')
    t.same(new Set(second.connections), new Set(['127.0.0.13']), 'only the one egress address now listed')
    t.same(new Set(second.received.map((r) => r.ehlo)), new Set(['only.localhost']), 'with its EHLO name')
    t.ok(rig.engine.egress.bytesSent()['127.0.0.13']! > 0, 'its bytes counted')

    const later = await rig.enqueue('later@example.net')
    await until(() => rig.events.some((e) => e.type === 'spool.deferred' && e.id === later.id))
    const deferred = rig.events.find((e) => e.type === 'spool.deferred' && e.id === later.id)
    t.equal(
      deferred?.type === 'spool.deferred' && deferred.nextAttemptAt,
      rig.clock.now + 7000,
      'deferred by the new schedule: 7 s, not the 60 s it started with',
    )
  },
)

t.test('#36, M8: a permanent code with words no rule knows is retried until the mail expires, never bounced on a guess', async (t) => {
  const { hsm } = await devHsm(t)
  const firm = await startReceiver(t, { host: '127.0.0.2' })
  const rx = await startReceiver(t, { onData: () => smtpError(554, '5.0.0 zq-17 the gate is shut tonight') })
  const rig = await deliveryRig(t, hsm, {
    routes: [
      { domain: 'example.net', host: '127.0.0.1', port: rx.port },
      { domain: 'bank.example', host: '127.0.0.2', port: firm.port },
    ],
    notifyAddress: 'ops@bank.example',
    retrySeconds: [120],
    maxAgeSeconds: 3600,
  })
  const m = await rig.enqueue('wang@example.net')
  await until(() => rig.spool.entry(m.id)?.state === 'deferred')
  t.match(rig.spool.entry(m.id), { attempts: 1 }, 'the first refusal defers')
  rig.clock.now += 121_000
  await until(() => rig.spool.entry(m.id)?.attempts === 2)
  t.equal(rx.received.length, 0, 'the receiver took nothing')
  const attempts = rig.events.filter((e) => e.type === 'delivery.attempt')
  t.ok(attempts.length >= 2 && attempts.every((e) => 'outcome' in e && e.outcome === 'deferred'), 'every attempt deferred, none bounced')
  rig.clock.now += 3_601_000
  await until(() => finals(rig.events)[m.id] === 'expired' && firm.received.length === 1)
  t.notOk(Object.values(finals(rig.events)).includes('bounced'), 'no bounce')
  t.match(firm.received[0]!.data.toString(), /\(expired\)/, 'the firm is told it expired')
  t.notMatch(firm.received[0]!.data.toString(), /invalid-recipient|Status: 5\.1\.1/, 'and not that the address is dead')
})
