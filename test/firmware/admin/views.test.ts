import t from 'tap'
import { alarms } from '../../../firmware/admin/views.ts'
import { parseConfig } from '../../../firmware/config/load.ts'

t.test('S11: the dashboard alarms name what needs a person, and none when all is well', async (t) => {
  const config = parseConfig({ dataDir: '/tmp/x' })
  const well = { hsm: { state: 'connected', certificates: [{ label: 'smime/bank', subject: 'x', notAfter: '2027-11-01', daysLeft: 200 }] }, spool: { held: 0 } }
  t.same(alarms(well, config, { failingWebhooks: new Map(), auditOverBudget: undefined, now: 0 }), [])
  const bad = {
    hsm: { state: 'unavailable', error: 'CKR_TOKEN_NOT_PRESENT', certificates: [{ label: 'smime/bank', subject: 'x', notAfter: '2026-12-01', daysLeft: 5 }] },
    spool: { held: 3 },
    submission: { auditBacklog: 120 },
    delivery: { paused: [{ address: '192.0.2.11', until: '2026-11-26T10:00:00Z' }] },
  }
  const raised = alarms(bad, config, {
    failingWebhooks: new Map([['https://firm.example/hook', '2026-11-26T09:00:00Z']]),
    auditOverBudget: { bytes: 11 * 2 ** 30, budget: 10 * 2 ** 30, at: 1000 },
    now: 2000,
  })
  t.same(
    raised.map((a) => a.kind),
    ['hsm', 'certificate', 'held', 'audit-backlog', 'egress-paused', 'webhook', 'audit-disk'],
    'each with its kind (sg_alarms{kind} on /metrics)',
  )
  const found = raised.map((a) => a.text)
  t.match(found, [
    /HSM unavailable: CKR_TOKEN_NOT_PRESENT/,
    /certificate smime\/bank expires in 5 days/,
    /3 mails held/,
    /120 audit records waiting/,
    /egress 192\.0\.2\.11 paused/,
    /webhook https:\/\/firm\.example\/hook failing since/,
    /audit trail over its disk budget: 11\.0 GiB of 10\.0 GiB/,
  ])
  t.equal(
    alarms(bad, config, { failingWebhooks: new Map(), auditOverBudget: { bytes: 1, budget: 0, at: 0 }, now: 2 * 86_400_000 }).length,
    5,
    'an over-budget report a day old is not repeated',
  )
})
