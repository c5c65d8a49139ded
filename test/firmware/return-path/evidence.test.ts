import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { parseConfig } from '../../../firmware/config/load.ts'
import { openLedgerStore } from '../../../firmware/ledger/ledger.ts'
import { unmatchedReports } from '../../../firmware/ledger/unmatched.ts'
import { spawnDaemon, submitter, writeDaemonConfig } from '../../helpers/daemon.ts'
import { run } from '../../helpers/hsm.ts'
import { smtpError, startReceiver, until } from '../../helpers/receiver.ts'
import { AUTO_REPLY, dsnFor, mdnFor, sendReport } from '../../helpers/returnpath.ts'
import { CLASS, returnsRig } from '../../helpers/returns.ts'

/**
 * #30 (M8, M9, M11; DESIGN "only authenticated evidence decides"): a
 * statement's fate changes only on a report that carries a token of the right
 * kind, one function decides what the report does, the spool acts on that
 * decision and the ledger applies the same record — so whatever path a
 * statement takes, the ledger's row says what the spool decided.
 */

const HOUR = 3_600_000
const start = Date.parse('2026-11-03T01:00:00Z')

type Path = {
  name: string
  cls?: string
  receiver?: 'refuse' | 'defer'
  /** What comes back after the first send (to the bounce address `b`, the read-receipt address `r`, or postmaster). */
  report?: { to: 'b' | 'r' | 'postmaster'; body: (messageId: string) => string }
  /** Hours to let pass after the report (the waits of M11, retries, expiry). */
  hours: number
  /** What the spool must end with, and the ledger row that says the same. */
  spool: string | undefined
  ledger: { state: string; read: boolean; paper: RegExp | null }
}

const PATHS: Path[] = [
  {
    name: 'MDN displayed via r-',
    report: { to: 'r', body: () => mdnFor('displayed') },
    hours: 0,
    spool: 'read',
    ledger: { state: 'delivered', read: true, paper: null },
  },
  {
    name: 'MDN deleted via r-',
    report: { to: 'r', body: () => mdnFor('deleted') },
    hours: 3,
    spool: 'unread',
    ledger: { state: 'delivered', read: false, paper: /^no read receipt/ },
  },
  {
    name: 'auto-reply via b-',
    report: { to: 'b', body: () => AUTO_REPLY },
    hours: 3,
    spool: 'unread',
    ledger: { state: 'delivered', read: false, paper: /^no read receipt/ },
  },
  { name: 'nothing comes back (unread)', hours: 3, spool: 'unread', ledger: { state: 'delivered', read: false, paper: /^no read receipt/ } },
  {
    name: 'hard bounce via b-',
    report: { to: 'b', body: () => dsnFor('wang@example.net', 'failed', '5.1.1') },
    hours: 3,
    spool: 'bounced',
    ledger: { state: 'bounced', read: false, paper: /^bounced: invalid-recipient/ },
  },
  {
    name: 'soft bounce via b- (the wait decides)',
    report: { to: 'b', body: () => dsnFor('wang@example.net', 'failed', '5.2.2').replace('user unknown', 'mailbox full') },
    hours: 3,
    spool: 'unread',
    ledger: { state: 'delivered', read: false, paper: /^no read receipt/ },
  },
  {
    name: 'DSN delayed via b-',
    report: { to: 'b', body: () => dsnFor('wang@example.net', 'delayed', '4.2.2') },
    hours: 3,
    spool: 'unread',
    ledger: { state: 'delivered', read: false, paper: /^no read receipt/ },
  },
  {
    name: 'mismatch: MDN displayed via b-',
    report: { to: 'b', body: () => mdnFor('displayed') },
    hours: 3,
    spool: 'unread',
    ledger: { state: 'delivered', read: false, paper: /^no read receipt/ },
  },
  {
    name: 'mismatch: DSN failed via r-',
    report: { to: 'r', body: () => dsnFor('wang@example.net', 'failed', '5.1.1') },
    hours: 3,
    spool: 'unread',
    ledger: { state: 'delivered', read: false, paper: /^no read receipt/ },
  },
  {
    name: 'forged: MDN displayed to postmaster quoting the Message-ID',
    report: { to: 'postmaster', body: (mid) => mdnFor('displayed', mid) },
    hours: 3,
    spool: 'unread',
    ledger: { state: 'delivered', read: false, paper: /^no read receipt/ },
  },
  { name: 'refused during delivery (550)', receiver: 'refuse', hours: 0, spool: 'bounced', ledger: { state: 'bounced', read: false, paper: /^bounced: / } },
  { name: 'expiry (4xx until maxAgeSeconds)', receiver: 'defer', hours: 7, spool: 'expired', ledger: { state: 'expired', read: false, paper: /^expired/ } },
  {
    name: 'outside M11: a bounce via b- after delivery',
    cls: 'monthly',
    report: { to: 'b', body: () => dsnFor('wang@example.net', 'failed', '5.1.1') },
    hours: 0,
    spool: 'delivered',
    ledger: { state: 'bounced', read: false, paper: /^bounced: invalid-recipient/ },
  },
]

t.test('spool equals ledger, every path (one clock the test moves)', async (t) => {
  // Each path has its own recipient at the receiver, which refuses or defers those the path asks it to.
  const behaviour = new Map<string, Path['receiver']>()
  const rig = await returnsRig(t, start, {
    onRcptTo: (a) => {
      const b = behaviour.get(a)
      return b === 'refuse' ? smtpError(550, '5.1.1 no such user') : b === 'defer' ? smtpError(451, '4.3.0 try later') : undefined
    },
  })
  const rows: string[] = []
  for (const [i, p] of PATHS.entries()) {
    const rcpt = `path${i}@example.net`
    behaviour.set(rcpt, p.receiver)
    const statementId = `S-PATH-${i}`
    const id = await rig.send(statementId, p.cls ?? CLASS, rcpt)
    // The first send (or its refusal, or its first deferral).
    await rig.advance(0, () => rig.rig.events.some((e) => e.type === 'delivery.attempt' && e.id === id))
    if (p.report) {
      const to = p.report.to === 'postmaster' ? 'postmaster@bounce.bank.example' : rig.address(id, p.report.to)
      t.equal(await sendReport(rig.port, to, p.report.body(`${id}@bank.example`)), 250, `${p.name}: the report is taken`)
    }
    // The waits of M11 (an hour each here), retries, expiry: in steps, so each step's timer comes due.
    for (let h = 0; h < p.hours * 4 && !rig.final(id); h++) await rig.advance(HOUR / 4)
    await rig.advance(0, () => rig.final(id) !== undefined)
    const row = await rig.row(statementId)
    const read = row.read_at !== null
    const agree =
      rig.final(id) === p.spool &&
      row.state === p.ledger.state &&
      read === p.ledger.read &&
      (p.ledger.paper === null ? row.paper_reason === null : p.ledger.paper.test(row.paper_reason ?? ''))
    rows.push(
      `${p.name.padEnd(58)} spool ${String(rig.final(id)).padEnd(9)} ledger ${row.state.padEnd(9)} read ${read ? 'yes' : 'no '} paper ${row.paper_reason ?? '-'}`,
    )
    t.ok(agree, `${p.name}: spool ${rig.final(id)}, ledger ${JSON.stringify({ state: row.state, read_at: row.read_at, paper: row.paper_reason })}`)
  }
  t.comment(`path | the spool's final state | the ledger's row\n${rows.join('\n')}`)
})

/** A daemon with the return path, a read-receipt class, a webhook endpoint that never answers (its outbox keeps every event) and the firm's notice address. */
const AUDIT = fileURLToPath(new URL('../../../provisioning/audit.ts', import.meta.url))

async function daemonBox(t: { teardown(fn: () => unknown): void }) {
  const rx = await startReceiver(t)
  const notices = await startReceiver(t)
  const cfg = await writeDaemonConfig(t, {
    spool: { verifyOnStart: false },
    delivery: {
      routes: [
        { domain: 'firm.example', host: '127.0.0.1', port: notices.port },
        { domain: '*', host: '127.0.0.1', port: rx.port },
      ],
      notifyAddress: 'ops@firm.example',
    },
    reports: { timeZone: 'UTC', webhooks: { endpoints: [{ url: 'https://127.0.0.1:1/hook' }], retrySeconds: [3600] } },
    returnPath: { domains: [{ from: 'bank.example', returnPath: 'bounce.bank.example' }], listen: '127.0.0.1:0', readReceipts: [{ statementClass: CLASS }] },
  })
  const child = spawnDaemon(t, ['--config', cfg.path])
  const listening = (await child.waitFor((r) => r.msg === 'submission listening')) as unknown as { starttls: { port: number } }
  const up = (await child.waitFor((r) => r.msg === 'return-path listener up')) as unknown as { listen: string }
  const submit = await submitter(t, cfg.dataDir, listening.starttls.port)
  const config = parseConfig(JSON.parse(readFileSync(cfg.path, 'utf8')))
  const ledger = async <T>(sql: string, params: (string | number)[] = []): Promise<T[]> => {
    const store = await openLedgerStore(config, { readOnly: true })
    try {
      return await store.all<T & Record<string, unknown>>(sql, params)
    } finally {
      await store.close()
    }
  }
  const trail = async (...args: string[]) =>
    (await run(process.execPath, [AUDIT, 'search', ...args, '--config', cfg.path])).stdout
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
  return {
    rx,
    notices,
    child,
    port: Number(up.listen.split(':').pop()),
    until,
    ledger,
    config,
    trail,
    async send(statementId: string, cls: string, messageId: string, rcpt = 'wang@example.net') {
      const info = await submit.sendMail({
        from: 'statements@bank.example',
        to: rcpt,
        subject: '有價證券月對帳單',
        text: 'statement',
        messageId: `<${messageId}>`,
        headers: { 'X-Statement-ID': statementId, 'X-Statement-Class': cls },
      })
      return /queued as (\S+)/.exec(info.response)![1]!
    },
  }
}

t.test('forged reports to postmaster quoting a real Message-ID decide nothing: listed as unmatched, masked', async (t) => {
  const box = await daemonBox(t)
  const high = await box.send('S-forge', CLASS, 'forge-1@bank.example')
  const plain = await box.send('S-forge-2', 'monthly', 'forge-2@bank.example')
  await box.until(() => box.rx.received.length === 2, 30_000)
  // Message-IDs are not secret: relays, providers and the customer see them.
  const quoting = (mid: string, rcpt: string) =>
    dsnFor(rcpt, 'failed', '5.1.1').replace(
      '--R--',
      `--R\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: statements@bank.example\r\nMessage-ID: <${mid}>\r\n\r\n--R--`,
    )
  t.equal(await sendReport(box.port, 'postmaster@bounce.bank.example', mdnFor('displayed', 'forge-1@bank.example')), 250, 'a forged MDN "displayed"')
  t.equal(await sendReport(box.port, 'postmaster@bounce.bank.example', quoting('forge-2@bank.example', 'wang@example.net')), 250, 'a forged DSN')
  t.equal(
    await sendReport(box.port, 'postmaster@bounce.bank.example', quoting('forge-2@bank.example', 'someone.else@example.org')),
    250,
    'another Final-Recipient',
  )
  await new Promise((r) => setTimeout(r, 1500))
  const rows = await box.ledger<Record<string, unknown>>('SELECT id, state, read_at, paper_owed_at FROM recipients ORDER BY id')
  t.same(
    rows.map((r) => [r.state, r.read_at, r.paper_owed_at]),
    [
      ['delivered', null, null],
      ['delivered', null, null],
    ],
    'both statements as they were: delivered, not read, no paper',
  )
  const finals = await box.trail('--type', 'spool.final', '--id', high)
  t.same(finals, [], 'the high-value statement still awaits its read receipt (no final state)')
  const hooks = await box.ledger<{ payload: string }>('SELECT payload FROM outbox')
  const types = hooks.map((h) => (JSON.parse(h.payload) as { type: string }).type)
  t.notOk(
    types.some((x) => ['read', 'bounced', 'paper_owed'].includes(x)),
    `no webhook says read, bounced or paper owed (${[...new Set(types)].join(', ')})`,
  )
  t.equal(box.notices.received.length, 0, "the firm's notice address got nothing")
  const reports = await box.trail('--type', 'returnpath.report')
  t.equal(reports.length, 3)
  t.ok(
    reports.every((r) => r.matchedBy === 'none' && r.effect === 'none' && r.why === 'no-token' && !('id' in r)),
    'each recorded unmatched, tied to nothing',
  )
  // The admin page's list (ledger/unmatched.ts): newest first, the statement each points to as a hint.
  const store = await openLedgerStore(box.config, { readOnly: true })
  const listed = await unmatchedReports(store).finally(() => store.close())
  t.match(listed, [
    { kind: 'dsn', hintQueueId: plain, hintStatementId: 'S-forge-2' },
    { kind: 'dsn', status: '5.1.1', category: 'invalid-recipient', hintQueueId: plain },
    { kind: 'mdn', hintQueueId: high, hintStatementId: 'S-forge' },
  ])
  t.notMatch(JSON.stringify(listed), /wang@example\.net|someone\.else@example\.org/, 'the texts masked')
})

t.test("a bounce's words reach no record with a national ID or a full address: trail, ledger, webhook, notice", async (t) => {
  const box = await daemonBox(t)
  const id = await box.send('S-WANG', 'monthly', 'wang-1@bank.example', 'flip@example.net')
  await box.until(() => box.rx.received.length === 1, 30_000)
  const verp = box.rx.received[0]!.mailFrom
  // Anyone who knows the bounce address writes this; A123456789 is a checksum-valid national ID.
  const words = '552 5.2.2 <flip@example.net>: mailbox full (Wang Da-Ming, A123456789), call 0912345678 ' + 'x'.repeat(300)
  const dsn = dsnFor('flip@example.net', 'failed', '5.2.2').replace('550 5.2.2 user unknown', words)
  t.equal(await sendReport(box.port, verp, dsn), 250)
  await box.until(() => box.notices.received.length === 1, 30_000)
  const [record] = await box.trail('--type', 'returnpath.report')
  t.comment(`the trail's record: ${JSON.stringify(record)}`)
  const reply = String(record?.reply)
  t.match(reply, /^552 5\.2\.2 <f\*\*\*\*p@example\.net>: mailbox full \(Wang Da-Ming, A12\*\*\*\*789\), call 09\*{6}78 x+/, 'the ID and the address masked')
  t.ok([...reply].length <= 200, `at most 200 characters (${[...reply].length})`)
  const ledger = await box.ledger<{ last_reply: string }>('SELECT last_reply FROM recipients WHERE id = ?', [id])
  const hooks = (await box.ledger<{ payload: string }>('SELECT payload FROM outbox')).map((h) => h.payload).join('\n')
  const notice = box.notices.received[0]!.data.toString()
  for (const [where, text] of [
    ['trail', JSON.stringify(await box.trail('--id', id))],
    ['ledger', ledger[0]!.last_reply],
    ['webhook', hooks],
    ['notice', notice.replace(/^Final-Recipient: .*$/m, '').replace(/^To: .*$/m, '')],
  ] as const) {
    t.notMatch(text, /A123456789/, `${where}: no national ID`)
    t.notMatch(text, /flip@example\.net/, `${where}: no full address`)
  }
  t.match(notice, /^Status: 5\.2\.2$/m, 'the notice keeps the receiver’s status')
  t.match(hooks, /"type":"bounced"/, 'the bounce went to the webhook outbox')
})
