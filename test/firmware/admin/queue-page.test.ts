import t from 'tap'
import { historyRows, queueListPage, queueMailPage } from '../../../firmware/admin/queue-page.ts'
import type { RecipientHistory } from '../../../firmware/ledger/queries.ts'

/**
 * The queue's pages as HTML (the routes, the ledger and the queue service
 * behind them are tested against the real daemon in server.test.ts and
 * browser.test.ts): what the ledger adds, a mail's history in time order,
 * and text from mail that stays text.
 */
const XSS = '<img src=x onerror=alert(1)>'
const operator = { user: 'lin', role: 'operator' as const, csrf: 'tok' }
const auditor = { user: 'chen', role: 'auditor' as const, csrf: 'tok' }
const at = (s: string) => Date.parse(`${s}Z`)

const recipient = (over: Partial<RecipientHistory>): RecipientHistory => ({
  idx: 0,
  recipient: 'w****g@example.net',
  state: 'accepted',
  acceptedAt: at('2026-11-02T01:00:00'),
  deferrals: 0,
  lastReply: null,
  deliveredAt: null,
  mx: null,
  sourceIp: null,
  tls: null,
  bouncedAt: null,
  bounceReason: null,
  expiredAt: null,
  removedAt: null,
  readAt: null,
  paperOwedAt: null,
  paperReason: null,
  ...over,
})

t.test("M9: a mail's history is each recipient's steps in time order, with the reply, MX, source and TLS", async (t) => {
  const rows = historyRows([
    recipient({
      deferrals: 2,
      lastReply: `451 4.2.0 busy ${XSS}`,
      deliveredAt: at('2026-11-02T03:00:00'),
      mx: 'mx.example.net',
      sourceIp: '192.0.2.11',
      tls: 'TLSv1.3',
    }),
    recipient({
      idx: 1,
      recipient: 'l**@example.org',
      bouncedAt: at('2026-11-02T02:00:00'),
      bounceReason: 'invalid-recipient',
      paperOwedAt: at('2026-11-02T02:00:01'),
      paperReason: 'bounced: invalid-recipient',
    }),
  ])
  t.same(
    rows.map((r) => [r[0], r[2]]),
    [
      ['w****g@example.net', 'accepted 收件'],
      ['l**@example.org', 'accepted 收件'],
      ['w****g@example.net', 'deferred ×2 延遲'],
      ['l**@example.org', 'bounced 退信'],
      ['l**@example.org', 'paper owed 需寄紙本'],
      ['w****g@example.net', 'delivered 送達'],
    ],
  )
  t.same(rows[5], ['w****g@example.net', '2026-11-02 03:00:00', 'delivered 送達', 'mx.example.net · from 192.0.2.11 · TLSv1.3'])
  const page = String(queueMailPage(operator, 'q1', { ok: true, result: { state: 'deferred', recipients: [] } }, undefined, []))
  t.notMatch(page, 'History', 'no history section before the ledger has the mail')
})

t.test('the list adds what the ledger knows; text from mail stays text; a search says what is no longer queued', async (t) => {
  const list = {
    ok: true as const,
    result: [{ id: 'q1', state: 'deferred', attempts: 2, created: '2026-11-02T01:00:00.000Z', nextAttemptAt: '2026-11-02T01:05:00.000Z' }],
  }
  const summary = { ok: true as const, result: { total: 1, deferred: 1 } }
  const facts = new Map([['q1', { statementId: `S-${XSS}`, account: 'statements', recipient: 'w****g@example.net', recipients: 3, lastReply: `451 ${XSS}` }]])
  const page = String(queueListPage(operator, list, summary, 'deferred', 1, 100, facts))
  t.match(page, '<td>S-&lt;img src=x onerror=alert(1)&gt;</td><td>statements</td><td>w****g@example.net +2</td><td>deferred</td><td>2</td>')
  t.notMatch(page, XSS)
  t.match(page, 'class="pager"')
  const plain = String(queueListPage(operator, list, summary, undefined, 1, 100))
  t.match(plain, '<td><a href="/queue/q1">q1</a></td><td>—</td><td>—</td><td>—</td>', 'a mail the ledger has not seen yet')

  const found = String(queueListPage(operator, list, summary, undefined, 1, 100, facts, { statement: `S-${XSS}`, recipient: '', notInQueue: 2 }))
  t.match(found, 'value="S-&lt;img src=x onerror=alert(1)&gt;"', 'the search is shown back as text')
  t.match(found, /1 in the queue; 2 more no longer in it/)
  t.notMatch(found, 'class="pager"')
})

t.test("S5: the mail page offers actions to those who may act, and the trail's search to those who may search it", async (t) => {
  const shown = { ok: true as const, result: { state: 'deferred', recipients: [{ address: 'w****g@example.net', state: 'pending' }] } }
  const forOperator = String(queueMailPage(operator, 'q1', shown))
  t.match(forOperator, 'action="/queue/q1/hold"')
  t.notMatch(forOperator, 'href="/audit?id=q1"')
  const forAuditor = String(queueMailPage(auditor, 'q1', shown))
  t.notMatch(forAuditor, 'action="/queue/q1/hold"')
  t.match(forAuditor, 'href="/audit?id=q1"')
})
