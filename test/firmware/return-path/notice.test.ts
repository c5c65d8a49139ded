import t from 'tap'
import { Classifier } from '../../../firmware/return-path/classify.ts'
import { failureOf, parseReport } from '../../../firmware/return-path/report.ts'

/**
 * Bounces in free text and the notices beside a DSN's fields (notice.ts),
 * read through parseReport: each address with its own words, code and
 * command, written here after the shapes of common mail systems.
 */
const crlf = (s: string) => Buffer.from(s.replaceAll('\n', '\r\n'))

t.test('a qmail (QSBMF) text bounce: each address with its own sentence and code', async (t) => {
  const r = await parseReport(
    crlf(`From: MAILER-DAEMON@mx.example.org
To: b-xyz@bounce.bank.example
Subject: failure notice

Hi. This is the qmail-send program at mx.example.org.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<chen@example.org>:
192.0.2.1 does not like recipient.
Remote host said: 550 5.1.1 <chen@example.org>... No such user
Giving up on 192.0.2.1.

<li@example.org>:
192.0.2.1 does not like recipient.
Remote host said: 552 5.2.2 <li@example.org>... Mailbox over quota

--- Below this line is a copy of the message.

Return-Path: <b-xyz@bounce.bank.example>
Message-ID: <Q3.2@bank.example>
To: chen@example.org, li@example.org

body
`),
  )
  t.equal(r.kind, 'dsn')
  t.equal(r.originalMessageId, 'Q3.2@bank.example')
  t.match(r.recipients, [
    { address: 'chen@example.org', status: '5.1.1', reply: '550' },
    { address: 'li@example.org', status: '5.2.2', reply: '552' },
  ])
  const c = new Classifier()
  t.equal(c.classify({ status: r.recipients[1]!.status, text: r.recipients[1]!.diagnostic }).category, 'quota-issues')
})

t.test("the command a failure answered is read from the notice's paragraph about the recipient when the DSN fields omit it", async (t) => {
  const dsn = (said: string) =>
    crlf(`From: MAILER-DAEMON@mx.example.net
To: b-abc@bounce.bank.example
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

<wang@example.net>: host mx.example.net[192.0.2.7] said: 550 5.2.1
    <wang@example.net>... User Unknown (in reply to ${said} command)

<lin@example.net>: host mx.example.net[192.0.2.7] said: 452 4.2.2
    Mailbox full

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; wang@example.net
Action: failed
Status: 5.2.1
Diagnostic-Code: smtp; 550 5.2.1 <wang@example.net>... User Unknown

Final-Recipient: rfc822; lin@example.net
Action: delayed
Status: 4.2.2
Diagnostic-Code: smtp; 452 4.2.2 Mailbox full

--B--
`)
  const rcpt = await parseReport(dsn('RCPT TO'))
  t.match(rcpt.recipients, [{ command: 'rcpt' }, { command: '' }], "one recipient's paragraph says nothing of the other's")
  const data = await parseReport(dsn('end of DATA'))
  t.equal(data.recipients[0]!.command, 'data')
})

t.test("a notice's one reply line is the recipient's when its own words have no code; Exim's (generated from) is not a recipient", async (t) => {
  const carrier = await parseReport(
    crlf(`From: post_master@vtext.example
To: b-xyz@bounce.bank.example
Subject: Re: statement

Error: Invalid user address

Error message below:
550 - Requested action not taken: no such user here

Message details:
  Subject: statement
  MAIL FROM: b-xyz@bounce.bank.example
  RCPT TO: wang@vtext.example
  Size (in bytes): 222
`),
  )
  t.match(carrier.recipients[0], { address: 'wang@vtext.example', reply: '550' })
  t.match(new Classifier().classify(failureOf(carrier.recipients[0]!)), { category: 'invalid-recipient', hard: true })

  const exim = await parseReport(
    crlf(`From: Mail Delivery System <Mailer-Daemon@mx.bank.example>
To: b-xyz@bounce.bank.example
Subject: Mail delivery failed: returning message to sender

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  wang@wanadoo.example
    (generated from chen.alias@example.com)
    SMTP error from remote mail server after end of data:
    host smtp.wanadoo.example [192.0.2.1]: 550 5.2.0 Mail rejected
`),
  )
  t.equal(exim.recipients.length, 1, 'the address the alias came from is not a second recipient')
  t.match(exim.recipients[0], { address: 'wang@wanadoo.example', status: '5.2.0', command: 'data' })
  t.match(exim.recipients[0]!.diagnostic, /550 5\.2\.0 Mail rejected/)
})

t.test('free-text notices: the reason may come before the address, and each recipient keeps only its own words', async (t) => {
  const notes = await parseReport(
    crlf(`From: postmaster@notes.example.com
To: b-xyz@bounce.bank.example
Subject: DELIVERY FAILURE: User not listed

------- Failure Reasons  --------

User  not listed in public Name & Address Book
wang@example.com


------- Returned Message --------
Received: from mx.bank.example by notes.example.com
Message-Id: <Q9.1@bank.example>
To: wang@example.com

body
`),
  )
  t.match(notes.recipients, [{ address: 'wang@example.com' }])
  t.match(notes.recipients[0]!.diagnostic, /^User not listed in public Name & Address Book/)
  t.match(new Classifier().classify({ text: notes.recipients[0]!.diagnostic }), { category: 'invalid-recipient', hard: true })

  // X-Failed-Recipients lists them in another order than the notice; no recipient takes the other's reply.
  const exim = await parseReport(
    crlf(`From: Mail Delivery System <Mailer-Daemon@mx.example.jp>
To: b-xyz@bounce.bank.example
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: chen@example.jp,
  li@example.jp

This message was created automatically by mail delivery software.

  li@example.jp
    SMTP error from remote mail server after RCPT TO:<li@example.jp>:
    host mx.example.jp [192.0.2.12]: 550 5.2.2 <li@example.jp>... Mailbox Full
  chen@example.jp
    SMTP error from remote mail server after RCPT TO:<chen@example.jp>:
    host mx.example.jp [192.0.2.12]: 550 5.1.1 <chen@example.jp>... User Unknown
`),
  )
  t.match(exim.recipients, [
    { address: 'chen@example.jp', status: '5.1.1', command: 'rcpt' },
    { address: 'li@example.jp', status: '5.2.2', command: 'rcpt' },
  ])
  t.notMatch(exim.recipients[0]!.diagnostic, /Mailbox Full/)
  t.notMatch(exim.recipients[1]!.diagnostic, /User Unknown/)
})

t.test('a one-part bounce that names its recipient only in the quoted original is read from the quoted To', async (t) => {
  const r = await parseReport(
    crlf(`From: Mail Delivery Subsystem <MAILER-DAEMON@relay.example.com>
To: b-xyz@bounce.bank.example
Subject: Returned mail: Cannot send message for 5 days

   ----- Transcript of session follows -----
421 example.com (smtp)... Deferred: Connection timed out during user open with example.com

   ----- Unsent message follows -----
Received: by relay.example.com; id 0001
From: statements@bank.example
To: wang@example.com
Subject: statement

body
`),
  )
  t.match(r, { kind: 'dsn', recipients: [{ address: 'wang@example.com', reply: '421' }] })
  t.equal(new Classifier().classify({ ...r.recipients[0]!, text: r.recipients[0]!.diagnostic }).category, 'message-expired')
})

t.test('a notice that says where its list of failed recipients starts: the addresses before it are not recipients', async (t) => {
  const exchange = await parseReport(
    crlf(`From: System Administrator <postmaster@example.net>
To: b-xyz@bounce.bank.example
Subject: Undeliverable: statement
MIME-Version: 1.0
Content-Type: text/plain; charset="us-ascii"

Your message

  To:      wang@example.net
  Subject: statement
  Sent:    Thu, 29 Apr 2026 23:00:00 +0800

did not reach the following recipient(s):

wang@mail.example.jp on Thu, 29 Apr 2026 23:00:05 +0800
    The recipient name is not recognized
    MSEXCH:IMS:EXAMPLE:MAIL:HOST 0 (000C05A6) Unknown Recipient
`),
  )
  t.match(exchange.recipients, [{ address: 'wang@mail.example.jp' }], 'the listed recipient, not the original To in the summary')
  t.equal(exchange.recipients.length, 1)
  t.match(exchange.recipients[0]!.diagnostic, /The recipient name is not recognized/)
  t.match(new Classifier().classify(failureOf(exchange.recipients[0]!)), { category: 'invalid-recipient', hard: true })
})
