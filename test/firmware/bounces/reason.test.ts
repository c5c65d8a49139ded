import fc from 'fast-check'
import t from 'tap'
import { bounceReason, enhancedStatus } from '../../../firmware/bounces/reason.ts'

t.test('replies as large receivers word them, in Sisimai reasons; hard only for a bad address', async (t) => {
  const cases: [string, string, boolean][] = [
    ['550 5.1.1 The email account that you tried to reach does not exist.', 'userunknown', true],
    ['550 5.1.1 <c@example.com>: Recipient address rejected: User unknown in virtual mailbox table', 'userunknown', true],
    ['556 5.1.10 example.net accepts no mail (null MX, RFC 7505)', 'notaccept', true],
    ['550 5.1.2 Host unknown', 'hostunknown', true],
    ['552 5.2.2 The email account that you tried to reach is over quota.', 'mailboxfull', false],
    ['452 4.2.2 Mailbox full', 'mailboxfull', false],
    ['550 5.2.1 The email account that you tried to reach is disabled.', 'suspend', false],
    ['552 5.3.4 Message size exceeds fixed maximum message size', 'mesgtoobig', false],
    ['550 5.7.1 Service unavailable; client host [192.0.2.1] blocked using zen.spamhaus.org', 'blocked', false],
    ['550 5.7.1 Message rejected as spam by Content Filtering.', 'spamdetected', false],
    ['550 5.7.1 Delivery not authorized, message refused', 'rejected', false],
    ["550 5.7.26 Unauthenticated email from bank.example is not accepted due to domain's DMARC policy", 'policyviolation', false],
    ['421 4.4.7 Message expired: no successful delivery', 'expired', false],
    ['550 Requested action not taken: mailbox unavailable', 'userunknown', true],
    ['554 Transaction failed', 'undefined', false],
  ]
  for (const [reply, reason, hard] of cases) t.match(bounceReason(reply), { reason, hard }, reply)
})

t.test('the enhanced status code: found where it is, not inside other numbers; linear on hostile text', async (t) => {
  t.equal(enhancedStatus('550 5.1.1 no'), '5.1.1')
  t.equal(enhancedStatus('556 5.1.10 null MX'), '5.1.10')
  t.equal(enhancedStatus('550 version 15.1.1 of the server'), undefined, 'part of a larger number')
  t.equal(enhancedStatus('550 at 2.5.1.1.3'), undefined)
  t.equal(enhancedStatus('451 temporary'), undefined)
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (s) => {
      const status = enhancedStatus(s)
      return status === undefined || /^[245]\.\d{1,3}\.\d{1,3}$/.test(status)
    }),
  )
  const hostile = '5.'.repeat(200_000)
  const t0 = performance.now()
  enhancedStatus(hostile)
  bounceReason(hostile)
  t.ok(performance.now() - t0 < 1000, 'a 400 KB reply of "5.5.5…" is read in well under a second')
})
