import { statSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import t from 'tap'
import { Ledger, ledgerPath } from '../../../firmware/ledger/ledger.ts'
import { statementHistory, summary } from '../../../firmware/ledger/queries.ts'
import { Classifier } from '../../../firmware/return-path/classify.ts'
import { attempt, ledgerRig, submitted } from '../../helpers/reports.ts'

const A = 'alice@example.net'
const B = 'bob@example.org'
const C = 'carol@example.com'

t.test('M8 M9: every state of every recipient, counted per day and batch, with reasons, latency and the paper owed', async (t) => {
  const rig = await ledgerRig(t)
  rig.clock.value = Date.parse('2026-11-05T01:00:00Z')
  await rig.emit(...submitted('Q1', [A, B], { statementId: 'S-2026-11-000001', statementClass: 'monthly', batch: 'NOV-A' }))
  rig.clock.value += 3_000
  await rig.emit(attempt('Q1', 'delivered', [A], '250 2.0.0 queued'), attempt('Q1', 'deferred', [B], '451 4.7.1 greylisted, try later'))
  rig.clock.value += 600_000
  await rig.emit(attempt('Q1', 'bounced', [B], `550 5.1.1 <${B}>: Recipient address rejected: User unknown`))
  await rig.emit(...submitted('Q2', [C], { statementId: 'S-2026-11-000002', statementClass: 'monthly', batch: 'NOV-A' }))
  await rig.emit({ type: 'spool.final', id: 'Q2', outcome: 'expired', reason: 'undelivered after 432000 s' })
  await rig.emit(
    {
      type: 'policy.decision',
      id: 'Q3',
      account: 'firm-statements',
      profile: 'securities',
      rule: 'subject',
      mode: 'enforce',
      outcome: 'refused',
      statementClass: 'monthly',
      batch: 'NOV-A',
    },
    {
      type: 'submission.refused',
      id: 'Q3',
      account: 'firm-statements',
      clientAddress: '127.0.0.1',
      code: 'EPOLICY_SUBJECT',
      reply: '550 5.7.1 EPOLICY_SUBJECT',
    },
  )

  const [row] = await summary(rig.ledger.store, { batch: 'NOV-A' }, ['batch'])
  t.match(row, {
    batch: 'NOV-A',
    submitted: 2,
    recipients: 3,
    refused: 1,
    delivered: 1,
    deferred: 1,
    bouncedHard: 1,
    bouncedSoft: 0,
    expired: 1,
    pending: 0,
    paperOwed: 2,
    bouncesByReason: { 'invalid-recipient': 1 },
    refusedByCode: { EPOLICY_SUBJECT: 1 },
  })
  t.ok(row!.latencyMs!.p50 >= 2500 && row!.latencyMs!.p50 <= 3500, `delivery latency ${row!.latencyMs!.p50} ms (3 s, ±12 %)`)

  const history = await statementHistory(rig.ledger.store, 'S-2026-11-000001')
  t.equal(history.length, 2)
  t.match(history[0], {
    queue_id: 'Q1',
    state: 'delivered',
    mx: 'mx.example.net',
    tls: 'TLSv1.3',
    cert_serial: '01ab',
    recipient: 'a****e@example.net',
    paper_owed_at: null,
  })
  t.match(history[1], { state: 'bounced', bounce_reason: 'invalid-recipient', bounce_hard: 1, deferrals: 1, paper_reason: 'bounced: invalid-recipient' })
  t.notMatch(JSON.stringify(history), /alice|bob@/, 'no address in clear anywhere in the ledger rows')
  t.match(history[0]!.recipient_hmac, /^[0-9a-f]{64}$/, 'the recipient as the audit trail keeps it: an HMAC under the HSM key')
})

t.test("M8: a refusal during delivery is reported by the firm's rules as delivery decided it, not by the built-in ones alone", async (t) => {
  const rulesFile = join(t.testdir(), 'firm-rules.json')
  writeFileSync(
    rulesFile,
    JSON.stringify({
      categories: { 'carrier-block': 'The carrier blocks statements to prepaid numbers.' },
      rules: [{ category: 'carrier-block', text: ['prepaid account'] }],
    }),
  )
  const rig = await ledgerRig(t, {}, { returnPath: { rulesFile } })
  rig.clock.value = Date.parse('2026-11-05T01:00:00Z')
  await rig.emit(...submitted('F1', [A], { statementId: 'S-F1', statementClass: 'monthly', batch: 'NOV-F' }))
  const reply = '550 5.7.1 prepaid account cannot receive mail'
  t.not(new Classifier().classify({ text: reply }).category, 'carrier-block', 'the built-in rules alone would say something else')
  await rig.emit(attempt('F1', 'bounced', [A], reply))
  const [row] = await statementHistory(rig.ledger.store, 'S-F1')
  t.match(row, { state: 'bounced', bounce_reason: 'carrier-block', paper_reason: 'bounced: carrier-block' })
})

t.test('a restart catches up from the trail and counts nothing twice; a rebuild from the trail gives the same report', async (t) => {
  const rig = await ledgerRig(t)
  await rig.emit(...submitted('Q1', [A], { statementId: 'S-1' }), attempt('Q1', 'delivered', [A], '250 ok'))
  await rig.ledger.stop()
  // Records written while no ledger runs (the box crashed before applying them) …
  for (const e of [...submitted('Q2', [B], { statementId: 'S-2' }), attempt('Q2', 'bounced', [B], '552 5.2.2 mailbox full')]) rig.trail.emit(e)
  await rig.trail.flush()
  // … are read from the trail's files at the next start.
  const ledger = await rig.restartLedger()
  t.equal(ledger.appliedSeq, rig.trail.head.seq)
  const before = await summary(ledger.store, {}, [])
  t.match(before[0], { submitted: 2, delivered: 1, bouncedSoft: 1, bouncesByReason: { 'quota-issues': 1 } })
  await rig.restartLedger()
  t.same(await summary(rig.ledger.store, {}, []), before, 'a second start changes nothing')

  await rig.ledger.stop()
  let progress = 0
  const n = await Ledger.rebuild(rig.config, rig.trail.dir, (records) => (progress = records))
  t.equal(n, rig.trail.head.seq, 'every record of the trail applied')
  t.equal(progress, n)
  await rig.restartLedger()
  t.same(await summary(rig.ledger.store, {}, []), before, 'the rebuilt ledger reports the same')
  t.equal(statSync(ledgerPath(rig.config)).mode & 0o777, 0o600, "the ledger file is the box's alone")
  t.equal(statSync(dirname(ledgerPath(rig.config))).mode & 0o777, 0o700)
})

t.test('S13: rows past retention are deleted, the day counts stay, and the deletion is in the audit trail', async (t) => {
  const rig = await ledgerRig(t, { retentionDays: 30 })
  rig.clock.value = Date.parse('2026-09-01T08:00:00Z')
  await rig.emit(...submitted('OLD', [A], { statementId: 'S-old' }))
  rig.clock.value = Date.parse('2026-11-20T08:00:00Z')
  await rig.emit(...submitted('NEW', [B], { statementId: 'S-new' }))
  await rig.ledger.retention()
  t.same(await statementHistory(rig.ledger.store, 'S-old'), [])
  t.equal((await statementHistory(rig.ledger.store, 'S-new')).length, 1)
  t.equal((await summary(rig.ledger.store, { to: '2026-09-30' }, ['day']))[0]?.submitted, 1, 'counts of the old day remain (they name no one)')
  await rig.trail.flush()
  t.match(
    rig.records().find((r) => r.type === 'reports.retention'),
    { statementRows: 1, recipientRows: 1, before: '2026-10-21' },
  )
})

t.test('a receiver faster than the acceptance record: attempts that reach the trail first are applied once the mail is accepted', async (t) => {
  const rig = await ledgerRig(t, {}, { reports: { timeZone: 'UTC', webhooks: { endpoints: [{ url: 'https://hooks.bank.example/e' }] } } })
  rig.clock.value = Date.parse('2026-11-05T01:00:00Z')
  const [accepted, signed, queued, submission] = submitted('Q9', [A, B], { batch: 'NOV' })
  // The spool made the mail deliverable; the receiver answered before the server recorded its 250.
  await rig.emit(accepted!, signed!, queued!, attempt('Q9', 'delivered', [A], '250 ok'), attempt('Q9', 'bounced', [B], '550 5.1.1 unknown'))
  t.same(await summary(rig.ledger.store, {}, []), [], 'nothing counted for a mail not yet accepted')
  await rig.emit(submission!)
  t.match((await summary(rig.ledger.store, {}, ['batch']))[0], { submitted: 1, delivered: 1, bouncedHard: 1, paperOwed: 1, pending: 0 })
  const hooks = await rig.ledger.store.all<{ payload: string }>('SELECT payload FROM outbox ORDER BY pos')
  t.same(
    hooks.map((h) => (JSON.parse(h.payload) as { type: string }).type),
    ['accepted', 'accepted', 'delivered', 'bounced', 'paper_owed'],
    'webhook events in their natural order: accepted first',
  )
  t.same(await rig.ledger.store.all('SELECT * FROM early_records'), [], 'nothing left waiting')
})

t.test(
  'M8, M11: reports that come back: a failed DSN bounces a delivered recipient and owes paper; an MDN "displayed" is the read; the rest is counted',
  async (t) => {
    const rig = await ledgerRig(t)
    rig.clock.value = Date.parse('2026-11-05T01:00:00Z')
    await rig.emit(...submitted('R1', [A, B], { statementId: 'S-R1', statementClass: 'monthly', batch: 'NOV-R' }))
    await rig.emit(attempt('R1', 'delivered', [A], '250 ok'), attempt('R1', 'delivered', [B], '250 ok'))
    // The records as the return path writes them: the decision (return-path/decide.ts) and what the spool did.
    const report = { type: 'returnpath.report', matchedBy: 'verp', clientAddress: '192.0.2.7', bytes: 2000 } as const
    const mdn = { ...report, matchedBy: 'read-receipt-address' } as const
    rig.clock.value += 2 * 86_400_000
    await rig.emit({
      ...report,
      id: 'R1',
      recipient: 1,
      kind: 'dsn',
      effect: 'bounce',
      spool: 'final',
      action: 'failed',
      category: 'quota-issues',
      hard: false,
      status: '5.2.2',
      reply: `552 5.2.2 <${B}> mailbox full`,
    })
    await rig.emit({ ...mdn, id: 'R1', recipient: 0, kind: 'mdn', effect: 'none', why: 'not-displayed', disposition: 'deleted', dispositionMode: 'manual' })
    await rig.emit({ ...report, id: 'R1', recipient: 0, kind: 'auto-reply', effect: 'none', why: 'not-a-report' })
    let rows = await statementHistory(rig.ledger.store, 'S-R1')
    t.match(rows[0], { state: 'delivered', read_at: null }, 'deleted unread and an auto-reply are not reads')
    t.match(rows[1], { state: 'bounced', bounce_reason: 'quota-issues', bounce_hard: 0, paper_reason: 'bounced: quota-issues' })
    t.equal(rows[1]!.paper_owed_at, rig.clock.value, 'paper owed from when the bounce came back')

    const displayed = {
      ...mdn,
      id: 'R1',
      recipient: 0,
      kind: 'mdn',
      effect: 'read',
      spool: 'final',
      disposition: 'displayed',
      dispositionMode: 'manual',
    } as const
    await rig.emit(displayed)
    await rig.emit(displayed)
    await rig.emit({
      ...report,
      id: 'R1',
      recipient: 1,
      kind: 'dsn',
      effect: 'bounce',
      spool: 'final',
      action: 'failed',
      category: 'invalid-recipient',
      hard: true,
      status: '5.1.1',
    })
    await rig.emit(
      { ...report, matchedBy: 'none', kind: 'dsn', effect: 'none', why: 'no-token' },
      { ...report, id: 'nope', recipient: 0, kind: 'dsn', effect: 'bounce', spool: 'final', action: 'failed' },
    )
    await rig.emit({ ...report, id: 'R1', recipient: 0, kind: 'dsn', effect: 'none', why: 'not-failed', action: 'delayed', status: '4.4.1' })
    rows = await statementHistory(rig.ledger.store, 'S-R1')
    t.equal(rows[0]!.read_at, rig.clock.value, 'read once, at the first "displayed"')
    t.match(rows[1], { bounce_reason: 'quota-issues' }, 'a second report about a final recipient changes nothing')
    const [day] = await summary(rig.ledger.store, { batch: 'NOV-R' }, ['batch'])
    t.match(day, { delivered: 2, bouncedSoft: 1, bouncedHard: 0, returned: 1, pending: 0, read: 1, paperOwed: 1 }, 'delivered and then bounced: pending 0')
    const details = await rig.ledger.store.all<{ key: string; n: number }>(
      "SELECT key, SUM(n) AS n FROM daily_detail WHERE kind = 'report' GROUP BY key ORDER BY key",
    )
    t.same(
      Object.fromEntries(details.map((d) => [d.key, Number(d.n)])),
      { 'after-final': 1, 'not-a-report': 1, bounce: 1, 'not-failed': 1, 'not-displayed': 1, read: 1, 'read-again': 1, unmatched: 2 },
      'every report counted by what it was',
    )
  },
)

t.test('M11: a statement whose read receipt never came owes paper, "no read receipt"; one that was read does not', async (t) => {
  const rig = await ledgerRig(t)
  rig.clock.value = Date.parse('2026-11-03T01:00:00Z')
  await rig.emit(...submitted('U1', [A], { statementId: 'S-U1', statementClass: 'monthly-high-value', batch: 'NOV-U' }))
  await rig.emit(...submitted('U2', [B], { statementId: 'S-U2', statementClass: 'monthly-high-value', batch: 'NOV-U' }))
  await rig.emit(attempt('U1', 'delivered', [A], '250 ok'), attempt('U2', 'delivered', [B], '250 ok'))
  await rig.emit({ type: 'spool.awaiting_receipt', id: 'U1', sends: 1, until: '2026-11-05T01:00:00.000Z', deadline: '2026-11-10T16:00:00.000Z' })
  await rig.emit({
    type: 'returnpath.report',
    id: 'U2',
    recipient: 0,
    matchedBy: 'read-receipt-address',
    kind: 'mdn',
    effect: 'read',
    spool: 'ended',
    disposition: 'displayed',
    clientAddress: '192.0.2.1',
    bytes: 900,
  })
  await rig.emit({ type: 'spool.final', id: 'U2', outcome: 'read', reason: 'read receipt (mdn)' })
  rig.clock.value += 4 * 86_400_000
  // A delivered recipient is not turned bounced by a later attempt (a retry after a crash): the first final outcome stands.
  await rig.emit(...submitted('U3', [C], { statementId: 'S-U3', statementClass: 'monthly', batch: 'NOV-U' }))
  await rig.emit(attempt('U3', 'delivered', [C], '250 ok'), attempt('U3', 'bounced', [C], '550 5.2.1 mailbox disabled'))
  await rig.emit({ type: 'spool.final', id: 'U1', outcome: 'unread', reason: 'no read receipt within 48 hours of the second send' })
  await rig.emit({ type: 'spool.final', id: 'U1', outcome: 'unread', reason: 'no read receipt within 48 hours of the second send' })
  const u1 = (await statementHistory(rig.ledger.store, 'S-U1'))[0]
  t.match(u1, { state: 'delivered', paper_reason: 'no read receipt within 48 hours of the second send', paper_owed_at: rig.clock.value })
  t.match((await statementHistory(rig.ledger.store, 'S-U2'))[0], { paper_reason: null, read_at: Date.parse('2026-11-03T01:00:00Z') })
  t.match((await statementHistory(rig.ledger.store, 'S-U3'))[0], { state: 'delivered', paper_reason: null })
  const [row] = await summary(rig.ledger.store, { batch: 'NOV-U' }, ['batch'])
  t.match(row, { read: 1, paperOwed: 1, delivered: 3, bouncedHard: 0, bouncedSoft: 0 }, 'counted once, replays included')
})
