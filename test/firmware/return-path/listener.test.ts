import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import nodemailer from 'nodemailer'
import t from 'tap'
import { ACCOUNT } from '../../helpers/box.ts'
import { spawnDaemon, submitter, writeDaemonConfig } from '../../helpers/daemon.ts'
import { run } from '../../helpers/hsm.ts'
import { startReceiver, until } from '../../helpers/receiver.ts'

const CLI = fileURLToPath(new URL('../../../provisioning/reports.ts', import.meta.url))
const AUDIT = fileURLToPath(new URL('../../../provisioning/audit.ts', import.meta.url))
const tool = (cli: string, config: string, ...args: string[]) =>
  run(process.execPath, [cli, ...args, '--config', config], { maxBuffer: 64 << 20 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  )

/** A DSN as Postfix writes one, for `rcpt`, sent back to `to` (the VERP address). */
const dsn = (to: string, rcpt: string, diagnostic: string, status: string) =>
  `From: MAILER-DAEMON@mx.example.net\r\nTo: ${to}\r\nSubject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n` +
  `Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n--R\r\nContent-Type: text/plain\r\n\r\nI'm sorry.\r\n` +
  `--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; ${rcpt}\r\nAction: failed\r\n` +
  `Status: ${status}\r\nDiagnostic-Code: smtp; ${diagnostic}\r\n\r\n--R--\r\n`

t.test('M8: statements go out with a VERP sender per recipient; a DSN that comes back days later turns delivered into bounced, paper owed', async (t) => {
  const rx = await startReceiver(t)
  const cfg = await writeDaemonConfig(t, {
    spool: { verifyOnStart: false },
    delivery: { routes: [{ domain: '*', host: '127.0.0.1', port: rx.port }], notifyAddress: 'ops@bank.example' },
    reports: { timeZone: 'UTC' },
    returnPath: { domains: [{ from: 'bank.example', returnPath: 'bounce.bank.example' }], listen: '127.0.0.1:0', maxMessageBytes: 64 * 1024 },
  })
  const child = spawnDaemon(t, ['--config', cfg.path])
  const listening = (await child.waitFor((r) => r.msg === 'submission listening')) as unknown as { starttls: { port: number } }
  const up = (await child.waitFor((r) => r.msg === 'return-path listener up')) as unknown as { listen: string }
  const inboundPort = Number(up.listen.split(':').pop())
  await until(() => child.stderr().includes('Stop it with Ctrl-C'), 10_000)
  t.match(child.stderr(), new RegExp(`return path \\(bounces\\) +127\\.0\\.0\\.1:${inboundPort}\\n`), 'the start banner names the listener')

  const submit = await submitter(t, cfg.dataDir, listening.starttls.port)
  const headers = (id: string) => ({ 'X-Statement-ID': id, 'X-Statement-Batch': '2026-11-monthly', 'X-Statement-Class': 'securities-monthly' })
  await submit.sendMail({ from: 'statements@bank.example', to: 'wang@example.net', subject: 's1', text: 'statement 1', headers: headers('S-1') })
  await submit.sendMail({
    from: 'statements@bank.example',
    to: ['lin@example.net', 'chen@example.org'],
    subject: 's2',
    text: 'statement 2',
    headers: headers('S-2'),
  })
  await submit.sendMail({ from: 'statements@other.example', to: 'ho@example.net', subject: 's3', text: 'statement 3', headers: headers('S-3') })
  await until(() => rx.received.length === 4, 30_000)

  const senderOf = (rcpt: string) => rx.received.find((m) => m.rcptTo.includes(rcpt))!.mailFrom
  const verp = /^b-[a-z2-7]{30,62}@bounce\.bank\.example$/
  for (const r of ['wang@example.net', 'lin@example.net', 'chen@example.org']) t.match(senderOf(r), verp, `${r}: a VERP sender at the return-path domain`)
  t.ok(
    rx.received.every((m) => m.rcptTo.length === 1),
    'one transaction per recipient',
  )
  t.not(senderOf('lin@example.net'), senderOf('chen@example.org'), 'each recipient its own token')
  t.equal(senderOf('ho@example.net'), 'statements@other.example', 'a domain without a return path keeps its sender')
  const ledger = async (id: string) => JSON.parse((await tool(CLI, cfg.path, 'statement', id, '--format', 'json')).stdout) as Record<string, unknown>[]
  /** The ledger follows the trail: asks until `pred` holds (or gives the last answer after 15 s). */
  const ledgerWhen = async (id: string, pred: (rows: Record<string, unknown>[]) => boolean) => {
    const end = Date.now() + 15_000
    for (;;) {
      const rows = await ledger(id).catch(() => [])
      if (pred(rows) || Date.now() > end) return rows
      await new Promise((r) => setTimeout(r, 200))
    }
  }
  await ledgerWhen('S-2', (rows) => rows.length === 2 && rows.every((r) => r.state === 'delivered'))

  const inbound = nodemailer.createTransport({ host: '127.0.0.1', port: inboundPort, secure: false, ignoreTLS: true })
  t.teardown(() => inbound.close())
  const send = (to: string, raw: string) => inbound.sendMail({ envelope: { from: '', to: [to] }, raw })

  // Days later: lin's mailbox does not exist after all.
  const lin = senderOf('lin@example.net')
  await send(lin, dsn(lin, 'lin@example.net', '550 5.1.1 <lin@example.net>: Recipient address rejected: User unknown', '5.1.1'))
  const s2 = await ledgerWhen('S-2', (rows) => rows[0]?.state === 'bounced')
  t.match(s2[0], { state: 'bounced', bounce_reason: 'invalid-recipient', bounce_hard: 1, paper_reason: 'bounced: invalid-recipient' }, 'bounced, paper owed')
  t.match(s2[1], { state: 'delivered', paper_reason: null }, "the other recipient's statement is untouched")

  // The same DSN again (a server that retries), and one for a statement already final: counted, nothing changes.
  await send(lin, dsn(lin, 'lin@example.net', '550 5.1.1 user unknown', '5.1.1'))
  t.match((await ledger('S-2'))[0], { state: 'bounced', bounce_reason: 'invalid-recipient' })

  // What the listener refuses: a forged token, a domain it does not serve (no relay), a report too large.
  const forged = lin.replace(/^b-(.)/, (_, c: string) => `b-${c === 'a' ? 'b' : 'a'}`)
  await t.rejects(send(forged, dsn(forged, 'x@example.net', '550 5.1.1', '5.1.1')), /550/, 'a forged token: 550 at RCPT')
  await t.rejects(send('someone@example.com', 'Subject: relay?\r\n\r\nx\r\n'), /550/, 'not a relay')
  const wang = senderOf('wang@example.net')
  await t.rejects(send(wang, `Subject: big\r\n\r\n${'x'.repeat(100 * 1024)}\r\n`), /552/, 'too large: 552')
  t.match((await ledger('S-1'))[0], { state: 'delivered' }, 'the refused report changed nothing')
  // postmaster takes mail, as RFC 5321 asks; with no token the report is unmatched, never guessed.
  await send('postmaster@bounce.bank.example', dsn('postmaster@bounce.bank.example', 'wang@example.net', '550 5.1.1 user unknown', '5.1.1'))
  t.match((await ledger('S-1'))[0], { state: 'delivered' }, 'an unmatched report changes no statement')
  // #30: a report to postmaster that quotes the statement's headers is still a report without a
  // token: Message-IDs are not secret (relays, providers and the customer see them), so it decides
  // nothing, whatever recipient it names. Its Message-ID is kept as a hashed hint for a person.
  const messageIdOf = (rcpt: string) => /^Message-ID: (<[^>]+>)\r$/im.exec(rx.received.find((m) => m.rcptTo.includes(rcpt))!.data.toString())![1]!
  const quoting = (rcpt: string, mid: string) =>
    dsn('postmaster@bounce.bank.example', rcpt, '550 5.2.1 mailbox disabled', '5.2.1').replace(
      '--R--',
      `--R\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: statements@bank.example\r\nMessage-ID: ${mid}\r\n\r\n--R--`,
    )
  await send('postmaster@bounce.bank.example', quoting('chen@example.org', messageIdOf('chen@example.org')))
  t.match(
    (await ledgerWhen('S-2', (rows) => rows[1]?.state === 'bounced'))[1],
    { state: 'delivered', paper_reason: null },
    'a report quoting the Message-ID, without a token, changes nothing',
  )
  await send('postmaster@bounce.bank.example', quoting('nobody@example.org', messageIdOf('wang@example.net').replace('<', '<x')))

  const trail = await tool(AUDIT, cfg.path, 'search', '--type', 'returnpath.report')
  const reports = trail.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
  t.equal(reports.length, 5, 'every accepted report is in the audit trail')
  t.match(reports[0], { kind: 'dsn', action: 'failed', category: 'invalid-recipient', hard: true, status: '5.1.1', matchedBy: 'verp' })
  t.notMatch(JSON.stringify(reports), /lin@example\.net/, 'no address in clear in the trail')
  t.match(reports[2], { matchedBy: 'none', effect: 'none', why: 'no-token' })
  t.match(reports[3], { matchedBy: 'none', effect: 'none', why: 'no-token', category: 'inactive-mailbox', messageIdHint: /^[\w-]{22}$/ })
  t.notOk('id' in reports[3]! || 'recipient' in reports[3]!, 'tied to no statement')
  t.match(reports[4], { matchedBy: 'none' }, 'a Message-ID no statement has: unmatched')
  // The firm's notices (M8) go to its notice address, from the null sender; nothing goes back to a reporter.
  await until(() => rx.received.length === 5, 15_000)
  const notices = rx.received.filter((m) => m.rcptTo.includes('ops@bank.example'))
  t.equal(notices.length, 1, 'one notice per bounced recipient: the repeated DSN is not told twice, the unmatched one not at all')
  t.ok(
    notices.every((m) => m.mailFrom === ''),
    'from the null sender',
  )
  t.match(
    notices.map((m) => m.data.toString()).join('\n'),
    /Final-Recipient: rfc822; lin@example\.net[^]*X-Statement-ID: S-2|X-Statement-ID: S-2[^]*Final-Recipient: rfc822; lin@example\.net/,
  )
  t.equal(rx.received.length - notices.length, 4, 'the listener sent nothing back (no backscatter)')

  // M8: the firm's paper-owed list for the month.
  const month = new Date().toISOString().slice(0, 7)
  const paper = await tool(CLI, cfg.path, 'paper', '--month', month, '--format', 'json')
  t.equal(paper.code, 0, paper.stderr)
  const owed = JSON.parse(paper.stdout) as Record<string, unknown>[]
  t.equal(owed.length, 1, 'one recipient owed paper')
  t.match(owed[0], {
    account: ACCOUNT.name,
    statement_id: 'S-2',
    reason: 'bounced: invalid-recipient',
    recipient: /^l.*@example\.net$/,
    delivered_at: /^\d{4}-/,
  })
  t.notMatch(paper.stdout, /lin@example\.net/, 'the recipient masked, never in clear')
  const csv = await tool(CLI, cfg.path, 'paper', '--month', month, '--format', 'csv')
  t.match(csv.stdout, /^\ufeffaccount,statement_id,queue_id,/, 'CSV for Excel')
  t.equal(csv.stdout.trim().split('\r\n').length, 2)
  const table = await tool(CLI, cfg.path, 'paper', '--month', month)
  t.match(table.stdout, /paper owed for statements submitted in \d{4}-\d\d \(times in UTC\): 1\n/)
  // #30: each column's cells start where its header starts.
  const [header, ...cells] = table.stdout.trimEnd().split('\n').slice(1)
  const starts = (line: string) => [...line.matchAll(/(?:^| {2})(\S)/g)].map((m) => m.index + m[0].length - 1)
  const columns = ['account', 'statement_id', 'recipient', 'reason', 'delivered_at', 'failed_at', 'paper_owed_at'].map((c) => header!.indexOf(c))
  t.ok(
    cells.every((line) => columns.every((at) => at === 0 || line.slice(at - 2, at) === '  ') && starts(line).every((s) => columns.includes(s))),
    `the cells line up with the header:\n${table.stdout}`,
  )
  // #30: a reader that stops reading (| head -1) ends the tool quietly, not with an EPIPE stack.
  const closed = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [CLI, 'paper', '--month', month, '--format', 'csv', '--config', cfg.path], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.stdout.destroy()
    child.on('exit', (code) => resolve({ code, stderr }))
  })
  t.equal(closed.code, 0, 'exit 0 when its reader is gone')
  t.notMatch(closed.stderr, /EPIPE|at .*\.ts:\d+/, 'no stack')
  // #30: a statement's history shows its read, unread and paper owed.
  const history = await tool(CLI, cfg.path, 'statement', 'S-2')
  t.match(history.stdout.split('\n')[1], /\bread\s+unread\s+paper owed\b/, 'read, unread and paper-owed columns')
  t.equal((await tool(CLI, cfg.path, 'paper', '--month', '2026-13')).code, 2, 'a month that is not one is refused')
  const none = await tool(CLI, cfg.path, 'paper', '--month', '2001-01', '--format', 'json')
  t.same(JSON.parse(none.stdout), [], 'a month with nothing owed: an empty list')
})

t.test('M11: a read-receipt statement asks for its receipt at a token address; the MDN "displayed" ends it as read', async (t) => {
  const rx = await startReceiver(t)
  const cfg = await writeDaemonConfig(t, {
    spool: { verifyOnStart: false },
    delivery: { routes: [{ domain: '*', host: '127.0.0.1', port: rx.port }] },
    reports: { timeZone: 'UTC' },
    signing: { domains: [{ domain: 'bank.example', dkimSelector: 'sel' }] },
    returnPath: {
      domains: [{ from: 'bank.example', returnPath: 'bounce.bank.example' }],
      listen: '127.0.0.1:0',
      readReceipts: [{ statementClass: 'monthly-high-value' }],
    },
  })
  const child = spawnDaemon(t, ['--config', cfg.path])
  const listening = (await child.waitFor((r) => r.msg === 'submission listening')) as unknown as { starttls: { port: number } }
  const up = (await child.waitFor((r) => r.msg === 'return-path listener up')) as unknown as { listen: string }
  const submit = await submitter(t, cfg.dataDir, listening.starttls.port)
  const info = await submit.sendMail({
    from: 'statements@bank.example',
    to: 'wang@example.net',
    subject: '有價證券月對帳單',
    text: 'statement',
    headers: { 'X-Statement-ID': 'S-HV-1', 'X-Statement-Class': 'monthly-high-value' },
  })
  const queueId = /queued as (\S+)/.exec(info.response)![1]!
  await until(() => rx.received.length === 1, 30_000)
  const mail = rx.received[0]!.data.toString()
  const dnt = /^Disposition-Notification-To: <(r-[a-z2-7]+@bounce\.bank\.example)>\r$/m.exec(mail)
  t.ok(dnt, 'the statement asks for a read receipt at a token address')
  t.match(mail, /DKIM-Signature:[^]*h=[^;]*disposition-notification-to/i, 'and the DKIM signature covers the request')

  const mdn =
    `From: wang@example.net\r\nTo: ${dnt![1]}\r\nSubject: Read: statement\r\nMIME-Version: 1.0\r\n` +
    `Content-Type: multipart/report; report-type=disposition-notification; boundary="M"\r\n\r\n--M\r\nContent-Type: text/plain\r\n\r\nRead.\r\n` +
    `--M\r\nContent-Type: message/disposition-notification\r\n\r\nReporting-UA: Microsoft Outlook 16.0\r\nFinal-Recipient: rfc822;wang@example.net\r\n` +
    `Disposition: manual-action/MDN-sent-manually; displayed\r\n\r\n--M--\r\n`
  const inbound = nodemailer.createTransport({ host: '127.0.0.1', port: Number(up.listen.split(':').pop()), secure: false, ignoreTLS: true })
  t.teardown(() => inbound.close())
  await inbound.sendMail({ envelope: { from: 'wang@example.net', to: [dnt![1]!] }, raw: mdn })

  const finals = async () =>
    (await tool(AUDIT, cfg.path, 'search', '--type', 'spool.final', '--id', queueId)).stdout
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { outcome: string })
  let outcome: string | undefined
  for (let i = 0; i < 50 && !outcome; i++) {
    outcome = (await finals())[0]?.outcome
    if (!outcome) await new Promise((r) => setTimeout(r, 200))
  }
  // When it fails, the message says which way the read went and what the trail has of the statement.
  const history = async () =>
    (await tool(AUDIT, cfg.path, 'search', '--id', queueId)).stdout
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .map(({ type, outcome, reply, reason }) => ({ type, outcome, reply, reason }))
  t.equal(
    outcome,
    'read',
    outcome === 'read'
      ? 'the statement ended as read, and its record was shredded'
      : `not ended as read; the box said: ${JSON.stringify(child.records.filter((r) => Number(r.level) >= 40 || r.msg === 'read receipt'))}; ` +
          `the trail has: ${JSON.stringify(await history())}`,
  )
  const rows = JSON.parse((await tool(CLI, cfg.path, 'statement', 'S-HV-1', '--format', 'json')).stdout) as Record<string, unknown>[]
  t.match(rows[0], { state: 'delivered', read_at: /^\d|^[1-9]/ }, 'the ledger has the read')
  t.equal(rx.received.length, 1, 'sent once')
})
