import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { builtInRules, Classifier, commandIn, loadRules, rulesWith } from '../../../firmware/return-path/classify.ts'

const dir = mkdtempSync(join(tmpdir(), 'sg-rules-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const file = (name: string, doc: unknown) => {
  const p = join(dir, name)
  writeFileSync(p, typeof doc === 'string' ? doc : JSON.stringify(doc))
  return p
}

t.test('M8, M9: replies during delivery and DSN diagnostics fall in the same categories', async (t) => {
  const c = new Classifier()
  const cases: [string, string, boolean][] = [
    ['550 5.1.1 <wang@example.net>: Recipient address rejected: User unknown', 'invalid-recipient', true],
    ['550 5.1.2 host example.invalid not found', 'bad-domain', true],
    ['554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org', 'spam-block', false],
    ['552 5.2.2 Mailbox full', 'quota-issues', false],
    ['550 5.2.1 The email account that you tried to reach is disabled', 'inactive-mailbox', false],
    ['552 5.3.4 Message size exceeds fixed limit', 'message-too-large', false],
    ['550 5.7.26 This mail has been blocked because the sender is unauthenticated (DMARC)', 'authentication-failed', false],
    ['421 4.7.0 Try again later, closing connection. (rate limit)', 'rate-limited', false],
    ['554 5.7.1 Message rejected: spam detected', 'spam-content', false],
    ['554 4.4.7 Message expired: unable to deliver in 840 minutes', 'message-expired', false],
    ['451 4.3.0 Temporary lookup failure', 'transient-failure', false],
    ['599 9.9.9 something nobody wrote a rule for', 'unclassified', false],
    ['550 收件者信箱不存在 (使用者不存在)', 'invalid-recipient', true],
    ['452 信箱已滿，請稍後再試', 'quota-issues', false],
    ['550 宛先不明のため配信できませんでした', 'invalid-recipient', true],
  ]
  for (const [reply, category, hard] of cases) t.match(c.classify({ text: reply, reply: reply.slice(0, 3) }), { category, hard }, reply)
  t.equal(c.classify({ text: '550 no such user here', reply: '550' }).status, '5.0.0', 'no code given: the class of the reply')
  t.equal(c.classify({ text: 'Mailbox unavailable' }).status, '', 'neither given: no code invented')
})

t.test('the command and the DSN action take part: a "user unknown" after DATA is a filter, a failed 4xx an expiry', async (t) => {
  const c = new Classifier()
  t.equal(c.classify({ text: '550 5.1.1 User unknown (in reply to RCPT TO command)' }).category, 'invalid-recipient')
  t.match(c.classify({ text: '550 User unknown (in reply to end of DATA command)' }), { category: 'recipient-filtered', hard: false })
  t.match(
    c.classify({ text: '550 5.1.1 <wang@example.com>... User unknown', command: 'data' }),
    { category: 'invalid-recipient', hard: true },
    "after DATA, but with the receiver's own 5.1.1: the mailbox does not exist",
  )
  t.equal(c.classify({ status: '4.4.1', text: 'connect to mx.example.net: Connection timed out', action: 'failed' }).category, 'message-expired')
  t.equal(c.classify({ status: '4.4.1', text: 'connect to mx.example.net: Connection timed out', action: 'delayed' }).category, 'bad-connection')
  t.equal(commandIn('host said: 550 rejected (in reply to mail from command)'), 'mail')
  t.equal(commandIn('no command named'), '')
})

t.test('where a refusal came and how it was reported take part: MAIL FROM, the greeting, a local program, a policy code', async (t) => {
  const c = new Classifier()
  const at = (text: string, more: Partial<Parameters<Classifier['classify']>[0]> = {}) => c.classify({ text, ...more })
  t.match(at('550 5.1.0 neko.example.com does not exist', { command: 'mail' }), { category: 'invalid-sender', hard: false }, 'at MAIL FROM it is the sender')
  t.equal(
    at('554 mx.example.net : daily relay quota reached', { command: 'connect', reply: '554' }).category,
    'spam-block',
    'at the greeting it is the sending host',
  )
  t.equal(at('550 Bad SPF records for [bank.example:192.0.2.2]', { command: 'mail' }).category, 'authentication-failed', 'named causes still win')
  t.equal(at('procmail: Couldn\'t create "/var/spool/mail/wang"', { status: '5.1.1', diagnosticType: 'x-unix' }).category, 'system-error')
  t.equal(at('Disk quota exceeded', { diagnosticType: 'x-unix' }).category, 'quota-issues', "a local program's full disk is still quota")
  t.match(at('550 5.7.1 550 User Unknown: wang@example.org'), { category: 'recipient-filtered', hard: false }, 'a policy code with user-unknown words')
  t.match(at('550 5.1.1 <wang@example.org>... User Unknown'), { category: 'invalid-recipient', hard: true })
  t.match(at("DNS Error: MX lookup of example.org: the domain example.org doesn't receive email according to its null MX", { status: '4.0.0' }), {
    category: 'bad-domain',
  })
  t.equal(at("550-5.7.1 Unauthenticated email from bank.example is not accepted due to domain's").category, 'authentication-failed')
  t.equal(at('550 5.7.1 Connections not accepted from servers without a valid sender domain. Fix reverse DNS').category, 'spam-block')
  t.equal(
    at("We're writing to let you know that the group you tried to contact may not exist, or you may not have permission to post messages to the group")
      .category,
    'invalid-sender',
  )
  t.equal(at('421 4.7.0 [TSS04] Messages from 192.0.2.25 temporarily deferred due to unexpected volume or user complaints').category, 'spam-block')
})

t.test('a failed 4xx that names its cause is that cause; 5.7.1 alone is policy; au leaves out the address when a filter refused', async (t) => {
  const c = new Classifier()
  const failed = (status: string, text: string) => c.classify({ status, text, action: 'failed' }).category
  t.equal(failed('4.4.2', 'lost connection with mx.example.net[192.0.2.7] while performing the HELO handshake'), 'bad-connection')
  t.equal(failed('4.3.0', '421 4.3.0 Upstream error, please check the postmaster pages'), 'system-error')
  t.equal(failed('4.0.0', '450 4.0.0 Temporary failure'), 'transient-failure', 'a transient failure that names no cause')
  t.equal(failed('4.3.0', '451 4.3.0 Could not be delivered. Please try again later.'), 'transient-failure')
  t.equal(failed('4.4.1', 'connect to mx.example.net[192.0.2.7]:25: Connection timed out'), 'message-expired', 'no answer until it gave up')
  t.equal(failed('4.2.0', '421 4.2.0 something else went wrong'), 'message-expired')
  t.equal(failed('5.0.0', 'Your message was not delivered within 0 days and 1 hours. Remote host is not responding.'), 'message-expired')
  // RFC 3463 X.7.1: "delivery not authorized, message refused"; no words, no blocklist.
  t.equal(c.classify({ text: '550 5.7.1 Delivery not authorized, message refused' }).category, 'policy-related')
  t.equal(c.classify({ text: '450 4.7.1 Deferred' }).category, 'spam-block', 'a 4.7.1 deferral is of the sending host')
  t.equal(c.classify({ text: '450 4.7.1 Greylisted, please try again later' }).category, 'transient-failure')
  t.match(c.classify({ text: '550 : User unknown' }), { category: 'recipient-filtered', hard: false }, "au: the recipient's reception filter")
  t.match(c.classify({ text: '550 <wang@ezweb.ne.jp>: User unknown' }), { category: 'invalid-recipient', hard: true }, 'au: no such mailbox')
  t.equal(c.classify({ text: '554 Message rejected: Email address is not verified.', command: 'mail' }).category, 'relay-denied')
  t.equal(
    c.classify({ text: "550 SC-004 Unfortunately, messages from 192.0.2.1 weren't sent.", command: 'mail' }).category,
    'spam-block',
    'at MAIL FROM, but about the sending host',
  )
  t.equal(c.classify({ text: '500 Line limit exceeded', command: 'data' }).category, 'message-too-large')
})

t.test("the firm's rules file is tried before the built-in rules; a bad file is refused with the rule it names", async (t) => {
  const firm = file('firm.json', {
    categories: { 'carrier-block': 'The carrier blocks statements to prepaid numbers.' },
    rules: [
      { category: 'carrier-block', text: ['prepaid account'] },
      { category: 'invalid-recipient', hard: true, status: ['5.9.*'] },
    ],
  })
  const c = new Classifier(rulesWith(firm))
  t.equal(c.classify({ text: '550 5.7.1 prepaid account cannot receive mail' }).category, 'carrier-block')
  t.match(c.classify({ status: '5.9.3', text: 'whatever' }), { category: 'invalid-recipient', hard: true })
  t.equal(c.classify({ text: '550 5.1.1 user unknown' }).category, 'invalid-recipient', 'built-in rules still apply after')
  t.equal(rulesWith(undefined), builtInRules())

  t.throws(() => loadRules(file('a.json', '{not json')), /config key "returnPath.rulesFile": cannot read the bounce rules file/)
  t.throws(() => rulesWith(file('b.json', { rules: [{ category: 'nope', text: ['x'] }] })), /rule 1: unknown category "nope"/)
  t.throws(() => rulesWith(file('c.json', { rules: [{ category: 'quota-issues' }] })), /rule 1: needs "status", "reply", "text" or "diagnosticType"/)
  t.throws(() => rulesWith(file('h.json', { rules: [{ category: 'quota-issues', reply: ['5.2'] }] })), /bad reply code "5.2"/)
  t.throws(() => rulesWith(file('d.json', { rules: [{ category: 'quota-issues', status: ['5.2'] }] })), /bad status "5.2"/)
  t.throws(() => rulesWith(file('e.json', { rules: [{ category: 'quota-issues', text: ['Mailbox  Full'] }] })), /lower case with single spaces/)
  t.throws(() => rulesWith(file('f.json', { rules: [{ category: 'quota-issues', text: ['x'], command: 'data' }] })), /"command" must be a list/)
  t.throws(() => rulesWith(file('g.json', { categories: {} })), /"rules" must be a list/)
})

t.test('every built-in rule names a described category and can match something', async (t) => {
  const r = builtInRules()
  for (const [i, rule] of r.rules.entries()) {
    t.ok(r.categories[rule.category], `rule ${i + 1}: ${rule.category} is described`)
  }
  t.ok(r.categories.unclassified, 'unclassified is described')
})

t.test('#36: a rule may name SMTP reply codes (RFC 5321 4.2), read from the reply when the failure does not give one', async (t) => {
  const firm = file('reply.json', { rules: [{ category: 'bad-domain', hard: true, reply: ['556'], source: 'RFC 7504: 556 Domain does not accept mail' }] })
  const c = new Classifier(rulesWith(firm))
  t.match(c.classify({ text: 'bank.example does not take mail here', reply: '556' }), { category: 'bad-domain', hard: true })
  t.match(c.classify({ text: '556 bank.example does not take mail here' }), { category: 'bad-domain', status: '5.0.0' }, 'the code at the start of the reply')
  t.equal(c.classify({ text: 'see 556 in the manual' }).category, 'unclassified', 'not a number inside the words')
  t.equal(loadRules(firm, builtInRules()).rules[0]!.source, 'RFC 7504: 556 Domain does not accept mail', 'the source is kept with the rule')
})

t.test('#36: a transient code or a delayed DSN is never hard; words no rule knows are unclassified and soft', async (t) => {
  const c = new Classifier()
  t.match(c.classify({ status: '5.1.1', text: 'no such user' }), { category: 'invalid-recipient', hard: true }, 'the permanent code: hard')
  t.match(c.classify({ status: '4.1.1', text: 'no such user' }), { category: 'invalid-recipient', hard: false }, 'the same words with 4.1.1: not yet')
  t.match(c.classify({ text: 'no such user', reply: '450' }), { hard: false }, 'a 450 reply')
  t.match(c.classify({ status: '5.1.2', text: 'host not found', action: 'delayed' }), { category: 'bad-domain', hard: false }, 'a delay is never final')
  t.match(c.classify({ status: '5.0.0', text: 'the receiver wrote words nobody has a rule for' }), { category: 'unclassified', hard: false, status: '5.0.0' })
  t.match(c.classify({ text: '554 please read our terms', reply: '554' }), { category: 'unclassified', hard: false, status: '5.0.0' }, 'a bare 554')
})

t.test('#36: RFC 3463 detail codes that name one cause, with words no rule knows', async (t) => {
  const c = new Classifier()
  const table: [string, string, boolean][] = [
    ['5.1.1', 'invalid-recipient', true],
    ['5.1.2', 'bad-domain', true],
    ['5.1.3', 'invalid-recipient', true],
    ['5.1.6', 'invalid-recipient', true],
    ['5.1.7', 'invalid-sender', false],
    ['5.1.8', 'invalid-sender', false],
    ['5.1.10', 'bad-domain', true],
    ['5.2.1', 'inactive-mailbox', false],
    ['5.2.2', 'quota-issues', false],
    ['4.2.2', 'quota-issues', false],
    ['5.2.3', 'message-too-large', false],
    ['5.3.4', 'message-too-large', false],
    ['4.4.1', 'bad-connection', false],
    ['4.4.2', 'bad-connection', false],
    ['5.4.4', 'bad-domain', true],
    ['4.4.5', 'rate-limited', false],
    ['5.4.7', 'message-expired', false],
    ['5.5.2', 'protocol-errors', false],
    ['5.6.3', 'content-related', false],
    ['5.7.13', 'inactive-mailbox', false],
    ['5.7.23', 'authentication-failed', false],
    ['5.7.25', 'spam-block', false],
    ['5.7.26', 'authentication-failed', false],
    ['5.7.27', 'invalid-sender', false],
  ]
  for (const [status, category, hard] of table) t.match(c.classify({ status, text: 'zq' }), { category, hard, status }, status)
  t.match(c.classify({ status: '5.0.0', text: 'zq' }), { category: 'unclassified', hard: false }, '5.0.0 names no cause')
})
