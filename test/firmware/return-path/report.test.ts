import fc from 'fast-check'
import t from 'tap'
import { Classifier } from '../../../firmware/return-path/classify.ts'
import { parseReport } from '../../../firmware/return-path/report.ts'

/**
 * Reports written here from the RFCs, for the shapes the bounce corpus lacks:
 * RFC 8098 MDNs as Outlook and Thunderbird send them, RFC 6533
 * internationalised DSNs, and the things that are not bounces (M8, M11).
 */
const crlf = (s: string) => Buffer.from(s.replaceAll('\n', '\r\n'))

const returned = `Message-ID: <Q1.7@bank.example>
From: statements@bank.example
To: wang@example.net
Subject: =?UTF-8?B?5bCN5biz5Zau?=
`

/** RFC 3464 appendix-style DSN for two recipients, one failed, one delayed. */
const DSN = crlf(`From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: b-abc@bounce.bank.example
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain

This is the mail system at host mx.example.net. I'm sorry to have to inform you that
your message could not be delivered.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
Arrival-Date: Mon, 2 Nov 2026 10:00:00 +0800

Final-Recipient: rfc822; wang@example.net
Original-Recipient: rfc822;wang@example.net
Action: failed
Status: 5.1.1
Remote-MTA: dns; mbox.example.net
Diagnostic-Code: smtp; 550 5.1.1 <wang@example.net>: Recipient address
    rejected: User unknown in virtual mailbox table

Final-Recipient: rfc822; lin@example.net
Action: delayed
Status: 4.2.2
Diagnostic-Code: smtp; 452 4.2.2 Mailbox full

--B1
Content-Type: message/rfc822

${returned}
body
--B1--
`)

t.test('M8: an RFC 3464 DSN gives each recipient its action, status and diagnostic; the returned Message-ID ties it to the statement', async (t) => {
  const r = await parseReport(DSN)
  t.equal(r.kind, 'dsn')
  t.equal(r.originalMessageId, 'Q1.7@bank.example')
  t.match(r.recipients, [
    {
      address: 'wang@example.net',
      action: 'failed',
      status: '5.1.1',
      reply: '550',
      remoteMta: 'mbox.example.net',
      diagnostic: /User unknown in virtual mailbox table/,
    },
    { address: 'lin@example.net', action: 'delayed', status: '4.2.2' },
  ])
  const c = new Classifier()
  t.match(c.classify({ status: r.recipients[0]!.status, text: r.recipients[0]!.diagnostic }), { category: 'invalid-recipient', hard: true })
  t.match(c.classify({ status: r.recipients[1]!.status, text: r.recipients[1]!.diagnostic }), { category: 'quota-issues', hard: false })
})

t.test('RFC 6533: an internationalised DSN (message/global-delivery-status, utf-8 addresses) is read', async (t) => {
  const r = await parseReport(
    crlf(`From: MAILER-DAEMON@mx.example.tw
Subject: =?UTF-8?B?6YCA5L+h?=
MIME-Version: 1.0
Content-Type: multipart/report; report-type=global-delivery-status; boundary="G"

--G
Content-Type: text/plain; charset=utf-8

無法投遞。

--G
Content-Type: message/global-delivery-status

Reporting-MTA: dns; mx.example.tw

Original-Recipient: utf-8; \\x{738B}\\x{5C0F}\\x{660E}@\\x{4F8B}\\x{5B50}.tw
Final-Recipient: utf-8; 王小明@例子.tw
Action: failed
Status: 5.2.2
Diagnostic-Code: smtp; 552 5.2.2 mailbox full

--G
Content-Type: message/global-headers

Message-ID: <Q2.1@bank.example>
To: 王小明@例子.tw

--G--
`),
  )
  t.equal(r.kind, 'dsn')
  t.equal(r.originalMessageId, 'Q2.1@bank.example')
  t.match(r.recipients, [{ address: '王小明@例子.tw', action: 'failed', status: '5.2.2' }])
})

/** RFC 8098 MDNs: Outlook writes a manual "displayed" with a human part; Thunderbird an automatic one. */
const mdn = (disposition: string, agent: string) =>
  crlf(`From: wang@example.net
To: rr@bounce.bank.example
Subject: Read: 2026-10 statement
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary="M"

--M
Content-Type: text/plain; charset=utf-8

Your message was read.

--M
Content-Type: message/disposition-notification

Reporting-UA: ${agent}
Final-Recipient: rfc822;wang@example.net
Original-Message-ID: <Q1.7@bank.example>
Disposition: ${disposition}

--M
Content-Type: text/rfc822-headers

${returned}
--M--
`)

t.test('M11: RFC 8098 MDNs are read with their disposition and mode, from Outlook and Thunderbird', async (t) => {
  const outlook = await parseReport(mdn('manual-action/MDN-sent-manually; displayed', 'wang-pc; Microsoft Outlook 16.0'))
  t.match(outlook, { kind: 'mdn', originalMessageId: 'Q1.7@bank.example', disposition: { type: 'displayed', action: 'manual' } })
  t.match(outlook.recipients, [{ address: 'wang@example.net' }])
  const thunderbird = await parseReport(mdn('automatic-action/MDN-sent-automatically; displayed', 'Mozilla/5.0 Thunderbird/128.3.0'))
  t.match(thunderbird.disposition, { type: 'displayed', action: 'automatic' })
  const deleted = await parseReport(mdn('manual-action/MDN-sent-manually; deleted', 'Microsoft Outlook 16.0'))
  t.match(deleted.disposition, { type: 'deleted' }, 'an MDN "deleted" is read as deleted, never as displayed')
  const legacy = await parseReport(mdn('automatic-action/MDN-sent-automatically; displayed/error', 'old-mua'))
  t.match(legacy.disposition, { type: 'displayed' }, 'an obsolete modifier does not hide the type')
})

t.test('auto-replies and vacation notices are reports of their own kind, never bounces', async (t) => {
  const vacation = await parseReport(
    crlf(`From: wang@example.net
To: statements@bank.example
Subject: =?UTF-8?B?6Ieq5YuV5Zue6KaG?=: 2026-10 statement
Auto-Submitted: auto-replied
Message-ID: <v1@example.net>

I am away until 30 November; mail to lin@example.net in the meantime.
`),
  )
  t.equal(vacation.kind, 'auto-reply')
  t.same(vacation.recipients, [])
  const outOfOffice = await parseReport(crlf(`From: lin@example.net\nSubject: Out of Office: statement\n\nBack on Monday.\n`))
  t.equal(outOfOffice.kind, 'auto-reply', 'by its subject, without Auto-Submitted (Exchange 2003)')
  const bounceWithAutoSubmitted = await parseReport(DSN)
  t.equal(bounceWithAutoSubmitted.kind, 'dsn', 'a DSN carries Auto-Submitted too, and stays a DSN')
})

t.test('RFC 5965: a complaint report names the complaining recipient', async (t) => {
  const r = await parseReport(
    crlf(`From: feedback@isp.example
Subject: complaint
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: text/plain

This is an abuse report.

--F
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: isp-fbl/1.0
Version: 1
Original-Rcpt-To: <wang@example.net>

--F
Content-Type: message/rfc822

${returned}
x
--F--
`),
  )
  t.match(r, { kind: 'feedback', feedbackType: 'abuse', originalMessageId: 'Q1.7@bank.example' })
  t.match(r.recipients, [{ address: 'wang@example.net' }])
})

t.test("which code describes the failure when the Status field and the receiver's reply differ (RFC 3463)", async (t) => {
  const dsn = (status: string, diagnostic: string) =>
    crlf(`From: MAILER-DAEMON@mx.example.net
To: b-abc@bounce.bank.example
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; wang@example.net
Action: failed
Status: ${status}
Diagnostic-Code: smtp; ${diagnostic}

--B--
`)
  const status = async (field: string, diagnostic: string) => (await parseReport(dsn(field, diagnostic))).recipients[0]!.status
  t.equal(await status('4.4.7', '450 4.7.1 Access denied. IP name lookup failed'), '4.7.1', 'X.4.7 only when the real cause is unknown')
  t.equal(await status('5.0.0', '550 5.1.1 User unknown'), '5.1.1', 'a class alone gives way')
  t.equal(await status('5.1.0', '550 5.1.1 User unknown'), '5.1.1', 'an X.Y.0 gives way to its detail')
  t.equal(await status('5.2.2', '452 4.2.2 Mailbox full'), '4.2.2', 'the class of the reply code decides between classes')
  t.equal(await status('5.1.1', '550 5.7.1 Access denied'), '5.1.1', 'two specific codes: the field')
  t.equal(await status('5.1.1', '550 No such user'), '5.1.1')
})

t.test('a multipart whose boundary parameter was lost (an unindented folded line) is read as text', async (t) => {
  const r = await parseReport(
    crlf(`From: post_master@sms.example.com
To: b-xyz@bounce.bank.example
Subject: Re: statement
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="OUT"

--OUT
Content-Type: multipart/alternative;
boundary="IN"

--IN
Content-Type: text/plain; charset=us-ascii

Error: Invalid user address

  RCPT TO: wang@sms.example.com

--IN--

--OUT--
`),
  )
  t.match(r, { kind: 'dsn', recipients: [{ address: 'wang@sms.example.com' }] })
})

t.test("Microsoft's Junk Mail Reporting Program: a complaint without an RFC 5965 part, the recipient in Outlook.com's header", async (t) => {
  const r = await parseReport(
    crlf(`From: staff@hotmail.com
To: b-xyz@bounce.bank.example
Subject: complaint about message from 192.0.2.22
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="J"

--J
Content-Type: message/rfc822

X-HmXmrOriginalRecipient: <wang@outlook.example>
Message-ID: <Q5.5@bank.example>
From: statements@bank.example
To: wang@outlook.example

body
--J--
`),
  )
  t.match(r, { kind: 'feedback', feedbackType: 'abuse', originalMessageId: 'Q5.5@bank.example', recipients: [{ address: 'wang@outlook.example' }] })
})

t.test('a report that says nothing readable is unknown, with no recipient and no guess', async (t) => {
  const r = await parseReport(crlf(`From: someone@example.com\nSubject: hello\n\nJust saying hi.\n`))
  t.match(r, { kind: 'unknown', recipients: [], originalMessageId: '' })
})

t.test('hostile input: any bytes, or a real report with bytes changed, are read without a throw', async (t) => {
  const seeds = [DSN, mdn('manual-action/MDN-sent-manually; displayed', 'x')]
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.uint8Array({ maxLength: 4000 }).map((a) => Buffer.from(a)),
        fc.tuple(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 12 })).map(([b, edits]) => {
          const out = Buffer.from(b)
          for (const [pos, byte] of edits) out[pos % out.length] = byte
          return out
        }),
      ),
      async (raw) => {
        const r = await parseReport(raw)
        return ['dsn', 'mdn', 'feedback', 'auto-reply', 'unknown'].includes(r.kind) && Array.isArray(r.recipients)
      },
    ),
    { numRuns: 300 },
  )
  t.pass('300 inputs read')
})

t.test('a MIME bomb (thousands of nested parts) and a 10 MB report are read in bounded time and space', async (t) => {
  const depth = 3000
  let bomb = 'From: x@example.net\r\nSubject: bomb\r\nMIME-Version: 1.0\r\n'
  for (let i = 0; i < depth; i++) bomb += `Content-Type: multipart/mixed; boundary="b${i}"\r\n\r\n--b${i}\r\n`
  const started = performance.now()
  const r = await parseReport(Buffer.from(bomb))
  t.equal(r.kind, 'unknown')
  const big = Buffer.concat([DSN.subarray(0, DSN.length - 9), Buffer.alloc(10 << 20, 'A'), Buffer.from('\r\n--B1--\r\n')])
  const r2 = await parseReport(big)
  t.match(r2.recipients, [{ address: 'wang@example.net' }, { address: 'lin@example.net' }], 'the quoted statement is cut, the report still read')
  t.ok(performance.now() - started < 10_000, 'both within seconds (a hang detector, not a timing test)')
})
