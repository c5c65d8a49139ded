import t from 'tap'
import type { AuditRecord, RecordOf } from '../../../firmware/ledger/ledger-writes.ts'

// #34: the ledger reads records typed from BoxEvent: a field the event does not have is a tsc
// error (npm test type-checks this file), so renaming an event's field breaks the build, not the ledger.

t.test('a record of one event type has that event’s fields, and no others', async (t) => {
  const report: RecordOf<'returnpath.report'> = { seq: 1, time: '2026-12-06T00:00:00Z', type: 'returnpath.report', matchedBy: 'verp', effect: 'bounce' }
  t.equal(report.matchedBy, 'verp')
  // @ts-expect-error returnpath.report has no field "command"
  t.equal(report.command, undefined)
  const attempt: RecordOf<'delivery.attempt'> = { seq: 2, time: '2026-12-06T00:00:01Z', type: 'delivery.attempt', outcome: 'bounced', reply: '550 5.1.1' }
  // @ts-expect-error delivery.attempt names no SMTP command (the ledger once read one that never existed)
  t.equal(attempt.command, undefined)
  const any: AuditRecord = attempt
  if (any.type === 'delivery.attempt') t.equal(any.reply, '550 5.1.1', 'the type narrows the record')
  else t.fail('narrowed')
})
