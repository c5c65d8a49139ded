import t from 'tap'
import { Classifier } from '../../../firmware/return-path/classify.ts'
import { decide, messageIdHint } from '../../../firmware/return-path/decide.ts'
import type { Report } from '../../../firmware/return-path/types.ts'

/** #30: one decision per report and recipient, from the report and the kind of its token only. */

const classifier = new Classifier()
const dsn = (action: 'failed' | 'delayed', status: string, diagnostic: string): Report => ({
  kind: 'dsn',
  recipients: [{ address: 'wang@example.net', action, status, reply: status.startsWith('5') ? '550' : '451', diagnostic, remoteMta: '', command: 'rcpt' }],
  originalMessageId: 'S-1.2@bank.example',
  from: 'MAILER-DAEMON@mx.example.net',
  subject: 'Undelivered',
})
const mdn = (type: string): Report => ({ kind: 'mdn', recipients: [], disposition: { type, action: 'manual' }, originalMessageId: '', from: '', subject: '' })
const b = { kind: 'b' as const, id: 'Q1', recipient: 0 }
const r = { kind: 'r' as const, id: 'Q1', recipient: 0 }

t.test('the kind matrix: a bounce address takes DSNs, a read-receipt address MDNs; nothing else acts', async (t) => {
  const failed = dsn('failed', '5.1.1', '550 5.1.1 <wang@example.net>: user unknown')
  t.match(decide(failed, b, classifier, 'masked'), { effect: 'bounce', category: 'invalid-recipient', hard: true, status: '5.1.1' }, 'DSN → b-: a bounce')
  t.match(decide(mdn('displayed'), r, classifier, 'masked'), { effect: 'read', disposition: 'displayed', dispositionMode: 'manual' }, 'MDN → r-: the read')
  t.match(decide(failed, r, classifier, 'masked'), { effect: 'none', why: 'mismatched' }, 'DSN → r-: nothing')
  t.match(decide(mdn('displayed'), b, classifier, 'masked'), { effect: 'none', why: 'mismatched' }, 'MDN → b-: nothing')
  t.match(
    decide(failed, undefined, classifier, 'masked'),
    { effect: 'none', why: 'no-token', category: 'invalid-recipient' },
    'no token: nothing, described for a person',
  )
  t.match(decide(mdn('deleted'), r, classifier, 'masked'), { effect: 'none', why: 'not-displayed', disposition: 'deleted' })
  t.match(decide(dsn('delayed', '4.4.1', 'timed out'), b, classifier, 'masked'), { effect: 'none', why: 'not-failed', action: 'delayed' })
  t.match(decide({ ...failed, kind: 'feedback' }, b, classifier, 'masked'), { effect: 'none', why: 'complaint' })
  t.match(decide({ ...failed, kind: 'auto-reply' }, b, classifier, 'masked'), { effect: 'none', why: 'not-a-report' })
})

t.test('the reply kept: redacted, or with returnPath.replyText none not at all', async (t) => {
  const failed = dsn('failed', '5.2.2', '552 5.2.2 <wang@example.net>: mailbox full (A123456789)')
  t.match(decide(failed, b, classifier, 'masked'), { reply: '552 5.2.2 <w****g@example.net>: mailbox full (A12****789)' })
  t.match(decide(failed, b, classifier, 'none'), { effect: 'bounce', status: '5.2.2', reply: '' })
})

t.test('the Message-ID hint: a hash, the same however the ID is written', async (t) => {
  t.equal(messageIdHint('<S-1.2@bank.example>'), messageIdHint('s-1.2@BANK.example'))
  t.match(messageIdHint('S-1.2@bank.example'), /^[\w-]{22}$/)
  t.notMatch(messageIdHint('S-1.2@bank.example'), /bank/)
})
