import { execFileSync } from 'node:child_process'
import t from 'tap'
import { buildDsn, type DsnFacts } from '../../../firmware/delivery/dsn.ts'

/** Python's email package reads the notice: its type, the text, and the delivery-status blocks as header maps. */
const PY_READ = `
import json, sys
from email import policy
from email.parser import BytesParser
m = BytesParser(policy=policy.default).parsebytes(sys.stdin.buffer.read())
parts = list(m.iter_parts())
status = parts[1]
print(json.dumps({
  'type': m.get_content_type(),
  'reportType': m.get_param('report-type'),
  'parts': [p.get_content_type() for p in parts],
  'subject': str(m['subject']),
  'from': str(m['from']),
  'statementHeader': m['x-statement-id'] and str(m['x-statement-id']),
  'text': parts[0].get_content(),
  'blocks': [dict(b.items()) for b in status.get_payload()],
  'defects': [str(d) for d in m.defects] + [str(d) for p in parts for d in p.defects],
}))
`

function read(message: Buffer) {
  return JSON.parse(execFileSync('/usr/bin/python3', ['-c', PY_READ], { input: message }).toString()) as {
    type: string
    reportType: string
    parts: string[]
    subject: string
    from: string
    statementHeader: string | null
    text: string
    blocks: Record<string, string>[]
    defects: string[]
  }
}

const facts = (over: Partial<DsnFacts> = {}): DsnFacts => ({
  host: 'gw.bank.example',
  to: 'ops@bank.example',
  queueId: 'AbCdEfGhIjKl',
  statementId: 'S-2026-11-000042',
  auditCopy: false,
  what: 'bounced',
  failed: [{ rcpt: 'gone@example.net', reason: '550 5.1.1 no such user' }],
  arrivedAt: Date.UTC(2026, 10, 25, 8, 0, 0),
  now: Date.UTC(2026, 10, 26, 8, 0, 0),
  messageId: 'n0t1ce',
  ...over,
})

t.test('M8: an RFC 3464 report that Python reads without defects: per-message block, one block per recipient', async (t) => {
  const raw = await buildDsn(
    facts({
      failed: [
        { rcpt: 'gone@example.net', reason: '550 5.1.1 no such user' },
        { rcpt: 'full@example.net', reason: '452 4.2.2 mailbox full' },
      ],
    }),
  )
  const r = read(raw)
  t.equal(r.type, 'multipart/report')
  t.equal(r.reportType, 'delivery-status')
  t.same(r.parts, ['text/plain', 'message/delivery-status'], 'no third part: the statement content never goes back')
  t.same(r.defects, [])
  t.equal(r.from, 'Mail Delivery System <MAILER-DAEMON@gw.bank.example>')
  t.equal(r.subject, 'Undelivered statement S-2026-11-000042 (bounced)')
  t.equal(r.statementHeader, 'S-2026-11-000042')
  t.match(
    r.text,
    /^Statement AbCdEfGhIjKl to g\*\*\*\*e@example\.net, f\*\*\*\*l@example\.net was not delivered \(bounced\)\.\r?\nStatement ID: S-2026-11-000042\r?\n/,
  )
  t.notMatch(r.text, /gone@|full@/, 'the readable text masks the addresses')
  t.equal(r.blocks.length, 3)
  t.same(r.blocks[0], {
    'Reporting-MTA': 'dns; gw.bank.example',
    'X-Statement-Gateway-Queue-ID': 'AbCdEfGhIjKl',
    'X-Statement-ID': 'S-2026-11-000042',
    'Arrival-Date': 'Wed, 25 Nov 2026 08:00:00 +0000',
  })
  t.same(r.blocks[1], { 'Final-Recipient': 'rfc822; gone@example.net', Action: 'failed', Status: '5.1.1', 'Diagnostic-Code': 'smtp; 550 5.1.1 no such user' })
  t.same(r.blocks[2], { 'Final-Recipient': 'rfc822; full@example.net', Action: 'failed', Status: '4.2.2', 'Diagnostic-Code': 'smtp; 452 4.2.2 mailbox full' })
})

t.test('the status code: from the reply, else 4.4.7 for an expiry and 5.0.0 otherwise; an operator removal says who', async (t) => {
  const expired = read(await buildDsn(facts({ what: 'expired', failed: [{ rcpt: 'slow@example.net', reason: 'no successful delivery within 120 hours' }] })))
  t.equal(expired.blocks[1]!.Status, '4.4.7')
  const removed = read(await buildDsn(facts({ what: 'removed', failed: [{ rcpt: 'x@example.net', reason: 'removed by operator alice: wrong customer' }] })))
  t.equal(removed.blocks[1]!.Status, '5.0.0')
  t.equal(removed.blocks[1]!['Diagnostic-Code'], 'x-statement-gateway; removed by operator alice: wrong customer')
  const copy = read(await buildDsn(facts({ auditCopy: true, statementId: undefined })))
  t.equal(copy.subject, 'Undelivered archive copy AbCdEfGhIjKl (bounced)')
  t.match(copy.text, /^The archive copy of statement AbCdEfGhIjKl /)
  t.equal(copy.statementHeader, null)
})

t.test('hostile replies: 7-bit lines within 998 octets, header fields without control characters', async (t) => {
  const reply = `550 5.1.1 ${'x'.repeat(4000)} \u00e9\u4e2d\r\nInjected: yes`
  const raw = await buildDsn(facts({ statementId: 'S-1\r\nBcc: evil@example.org', failed: [{ rcpt: 'gone@example.net', reason: reply }] }))
  const lines = raw.toString('latin1').split('\r\n')
  t.ok(
    lines.every((l) => l.length <= 998),
    'no line over 998 octets',
  )
  t.ok(
    [...raw].every((b) => b < 0x80),
    '7-bit throughout',
  )
  const r = read(raw)
  t.same(r.defects, [])
  t.equal(r.blocks.length, 2, 'no extra block or field smuggled in through the reply')
  t.notOk('Injected' in r.blocks[1]!)
  t.match(r.blocks[1]!['Diagnostic-Code'], /^smtp; 550 5\.1\.1 x+\.\.\.$/)
  t.notMatch(raw.toString(), /^Bcc:/m, "the firm's id cannot add a header field")
})
