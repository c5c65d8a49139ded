import { spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { ConfigStore } from '../../../firmware/config/store.ts'
import { parseConfig } from '../../../firmware/config/load.ts'
import { ReadReceipts } from '../../../firmware/return-path/receipts.ts'
import { ReadReceiptStage } from '../../../firmware/pipeline/stages/read-receipt.ts'
import { ReturnPathTokens } from '../../../firmware/return-path/verp.ts'
import { BOX_KEYS } from '../../../firmware/keys/manifest.ts'
import type { BoxEvent } from '../../../firmware/events.ts'
import { tempDir } from '../../helpers/box.ts'
import { deliveryRig, finals, route } from '../../helpers/delivery.ts'
import { devHsm } from '../../helpers/hsm.ts'
import { smtpError, startReceiver, until, type ReceiverOptions } from '../../helpers/receiver.ts'

const CLASS = 'monthly-high-value'
const RETURN_PATH = {
  returnPath: {
    domains: [{ from: 'bank.example', returnPath: 'bounce.bank.example' }],
    readReceipts: [{ statementClass: CLASS }],
    enabled: false,
  },
}
const HOUR = 3_600_000
const taipei = (local: string) => Date.parse(`${local}+08:00`)

t.test('M11: the deadline is the end of the 10th of the first send’s month, in Asia/Taipei', async (t) => {
  const r = new ReadReceipts(parseConfig({ dataDir: '/tmp/x', ...RETURN_PATH }))
  const rule = r.ruleFor({ kind: 'statement', statementClass: CLASS, rcptTo: ['a@example.net'], mailFrom: 'statements@bank.example' })!
  t.ok(rule, 'a statement of the class, to one recipient, from a domain with a return path')
  t.equal(r.ruleFor({ statementClass: CLASS, rcptTo: ['a@example.net', 'b@example.net'], mailFrom: 'statements@bank.example' }), undefined, 'not to two')
  t.equal(r.ruleFor({ statementClass: CLASS, rcptTo: ['a@example.net'], mailFrom: 'statements@other.example' }), undefined, 'not without a return path')
  t.equal(r.ruleFor({ statementClass: 'monthly', rcptTo: ['a@example.net'], mailFrom: 'statements@bank.example' }), undefined, 'not another class')
  t.equal(new Date(r.deadline(rule, taipei('2026-11-03T09:00:00'))).toISOString(), '2026-11-10T16:00:00.000Z', 'Nov 11 00:00 in Taipei')
  t.equal(new Date(r.deadline(rule, taipei('2026-11-30T23:30:00'))).toISOString(), '2026-11-10T16:00:00.000Z', 'late in the month: already past')
  t.equal(new Date(r.deadline(rule, Date.parse('2026-11-30T17:00:00Z'))).toISOString(), '2026-12-10T16:00:00.000Z', 'Dec 1 in Taipei is December')
  t.same(r.step(rule, { sends: 1, firstSentAt: taipei('2026-11-03T09:00:00') }, taipei('2026-11-05T09:00:00')), { step: 'second-send' })
  t.match(r.step(rule, { sends: 1, firstSentAt: taipei('2026-11-09T10:00:00') }, taipei('2026-11-11T10:00:00')), { step: 'unread', reason: /deadline/ })
  t.match(r.step(rule, { sends: 2, firstSentAt: taipei('2026-11-03T09:00:00') }, taipei('2026-11-07T09:00:00')), { step: 'unread', reason: /second send/ })
})

t.test('M11: the read-receipt request goes in before signing, to a token address at the return-path domain', async (t) => {
  const { hsm } = await devHsm(t)
  await hsm.ensureKeys(BOX_KEYS)
  const tokens = new ReturnPathTokens(hsm)
  const config = parseConfig({ dataDir: tempDir(t), ...RETURN_PATH })
  const stage = new ReadReceiptStage({ store: new ConfigStore(config), tokens })
  const envelope = {
    id: 'AAAAAAAAAAAA',
    mailFrom: 'statements@bank.example',
    rcptTo: ['wang@example.net'],
    account: 'firm',
    clientAddress: '127.0.0.1',
    tls: undefined,
    receivedAt: 0,
    statementClass: CLASS,
  }
  const message = Buffer.from(
    'From: statements@bank.example\r\nDisposition-Notification-To: firm@bank.example,\r\n  other@bank.example\r\nSubject: s\r\n\r\nbody\r\n',
  )
  const out = (await stage.process({ envelope, message })).message.toString()
  const m = /^Disposition-Notification-To: <(r-[a-z2-7]+)@bounce\.bank\.example>\r\n/.exec(out)
  t.ok(m, out.slice(0, 120))
  t.same(await tokens.open(m![1]!), { kind: 'r', id: 'AAAAAAAAAAAA', recipient: 0 }, 'the token names the statement and its one recipient')
  t.equal(out.match(/Disposition-Notification-To/g)!.length, 1, "the firm's own request is replaced, folded lines and all")
  t.match(out, /\r\nFrom: statements@bank\.example\r\nSubject: s\r\n\r\nbody\r\n$/)
  const other = { envelope: { ...envelope, statementClass: 'monthly' }, message }
  t.equal((await stage.process(other)).message, message, 'another class is left as it is')
})

/** A spool and delivery engine with a clock the test moves; a receiver on loopback. */
async function timeline(t: { teardown(fn: () => unknown): void }, start: number, receiver: ReceiverOptions = {}) {
  const { hsm } = await devHsm(t)
  await hsm.ensureKeys(BOX_KEYS)
  const rx = await startReceiver(t, receiver)
  const dataDir = tempDir(t)
  const make = () => deliveryRig(t, hsm, route(rx.port), { now: start, dataDir, config: RETURN_PATH, returnPath: new ReturnPathTokens(hsm) })
  let rig = await make()
  const send = async () => (await rig.enqueue('wang@example.net', 'Statement body\r\n', undefined, '', { statementClass: CLASS })).id
  const awaiting = (id: string) =>
    rig.events.filter((e): e is Extract<BoxEvent, { type: 'spool.awaiting_receipt' }> => e.type === 'spool.awaiting_receipt' && e.id === id)
  return {
    rx,
    get rig() {
      return rig
    },
    send,
    awaiting,
    /** Moves the box's clock and waits for the engine to act on what became due. */
    async advance(ms: number, until_: () => boolean) {
      rig.clock.now += ms
      await until(until_, 10_000)
    },
    /** The box stops and starts again over the same spool (a restart between the steps). */
    async restart() {
      const now = rig.clock.now
      await rig.engine.stop()
      await rig.spool.stop()
      rig = await deliveryRig(t, hsm, route(rx.port), { now, dataDir, config: RETURN_PATH, returnPath: new ReturnPathTokens(hsm) })
    },
  }
}

t.test('M11 timeline: a read after the first send ends it — no second send, the record shredded', async (t) => {
  const tl = await timeline(t, taipei('2026-11-03T09:00:00'))
  const id = await tl.send()
  await until(() => tl.awaiting(id).length === 1)
  t.equal(tl.rx.received.length, 1)
  t.match(tl.awaiting(id)[0], { sends: 1, until: '2026-11-05T01:00:00.000Z', deadline: '2026-11-10T16:00:00.000Z' })
  t.equal(tl.rig.spool.entry(id)?.state, 'awaiting', 'kept in the spool, still encrypted')
  t.equal(await tl.rig.engine.read(id, 'open'), 'not-evidence', 'an open is not what this class counts as read')
  t.equal(await tl.rig.engine.read(id, 'mdn'), 'read')
  t.equal(finals(tl.rig.events)[id], 'read')
  t.ok(
    tl.rig.events.some((e) => e.type === 'spool.record_shredded' && e.id === id),
    'shredded (M10)',
  )
  tl.rig.clock.now += 72 * HOUR
  await new Promise((r) => setTimeout(r, 400))
  t.equal(tl.rx.received.length, 1, 'never sent again')
  t.equal(await tl.rig.engine.read(id, 'mdn'), 'not-awaiting', 'a second receipt changes nothing')
})

t.test('M11 timeline: no read in 48 h — the same signed bytes again; a read after the second send ends it', async (t) => {
  const tl = await timeline(t, taipei('2026-11-02T10:00:00'))
  const id = await tl.send()
  await until(() => tl.awaiting(id).length === 1)
  await tl.advance(47 * HOUR, () => true)
  await new Promise((r) => setTimeout(r, 300))
  t.equal(tl.rx.received.length, 1, 'not before the wait is over')
  await tl.advance(1 * HOUR + 1000, () => tl.awaiting(id).length === 2)
  t.equal(tl.rx.received.length, 2, 'sent a second time')
  t.ok(tl.rx.received[1]!.data.equals(tl.rx.received[0]!.data), 'byte for byte the same message')
  t.match(tl.awaiting(id)[1], { sends: 2, until: new Date(tl.rig.clock.now + 48 * HOUR).toISOString() })
  t.equal(await tl.rig.engine.read(id, 'mdn'), 'read')
  t.equal(finals(tl.rig.events)[id], 'read')
})

t.test('M11 timeline: no read at all — paper owed 2 days after the second send; a restart between the steps loses nothing', async (t) => {
  const tl = await timeline(t, taipei('2026-11-02T10:00:00'))
  const id = await tl.send()
  await until(() => tl.awaiting(id).length === 1)
  await tl.restart()
  t.equal(tl.rig.spool.entry(id)?.state, 'awaiting', 'still awaiting after the restart')
  await tl.advance(48 * HOUR + 1000, () => tl.awaiting(id).length === 1)
  t.equal(tl.rx.received.length, 2, 'the second send, after the restart')
  await tl.restart()
  await tl.advance(48 * HOUR + 1000, () => finals(tl.rig.events)[id] === 'unread')
  t.match(
    tl.rig.events.find((e) => e.type === 'spool.final' && e.id === id),
    { outcome: 'unread', reason: /no read receipt within 48 hours of the second send/ },
  )
  t.equal(tl.rx.received.length, 2, 'never a third send')
  // The final event comes first (the trail), then the journal, then the record goes.
  await until(() => tl.rig.events.some((e) => e.type === 'spool.record_shredded' && e.id === id))
  t.equal(tl.rig.spool.entry(id), undefined, 'gone from the spool, its record shredded')
})

t.test('M11 timeline: a first send on the 9th — the deadline cuts the second send, paper is owed', async (t) => {
  const tl = await timeline(t, taipei('2026-11-09T10:00:00'))
  const id = await tl.send()
  await until(() => tl.awaiting(id).length === 1)
  await tl.advance(48 * HOUR + 1000, () => finals(tl.rig.events)[id] === 'unread')
  t.equal(tl.rx.received.length, 1, 'no second send after the 10th')
  t.match(
    tl.rig.events.find((e) => e.type === 'spool.final' && e.id === id),
    { reason: /deadline \(day 10\) passed before a second send/ },
  )
})

t.test('M11 timeline: the second send bounces — the first was delivered and never read, so paper is owed for that', async (t) => {
  const tl = await timeline(t, taipei('2026-11-02T10:00:00'), { onRcptTo: (_a, count) => (count >= 2 ? smtpError(550, '5.2.1 mailbox disabled') : undefined) })
  const id = await tl.send()
  await until(() => tl.awaiting(id).length === 1)
  await tl.advance(48 * HOUR + 1000, () => finals(tl.rig.events)[id] !== undefined)
  t.match(
    tl.rig.events.find((e) => e.type === 'spool.final' && e.id === id),
    { outcome: 'unread', reason: /no read receipt, and the second send bounced: 550 5\.2\.1 mailbox disabled/ },
  )
})

t.test('M11: a read that comes while the statement is in flight is journalled: after a crash it ends as read, not sent again', async (t) => {
  const tl = await timeline(t, taipei('2026-11-02T10:00:00'))
  const id = await tl.send()
  await until(() => tl.awaiting(id).length === 1)
  // The engine has claimed it for its second send (in flight) when the MDN comes …
  t.ok(tl.rig.spool.claimAwaiting(id))
  t.equal(await tl.rig.engine.read(id, 'mdn'), 'read')
  t.match(tl.rig.spool.receiptWait(id), { sends: 1, read: true })
  // … and the box stops before that attempt is recorded (the journal has the read).
  await tl.restart()
  t.match(tl.rig.spool.receiptWait(id), { read: true }, 'the read survives the restart')
  await tl.advance(1000, () => finals(tl.rig.events)[id] === 'read')
  t.equal(tl.rx.received.length, 1, 'not sent again')
})

t.test('M11: a read that comes while the first attempt is under way ends it as read, even when that attempt hears no 250', async (t) => {
  const on: { data?: () => void } = {}
  let offered = 0
  const tl = await timeline(t, taipei('2026-11-02T10:00:00'), {
    // The receiver has the statement (the customer opens it) and its 250 is lost: the attempt ends deferred.
    onData: (_mail, count) => {
      offered = count
      if (count === 1) on.data?.()
      return count === 1 ? smtpError(451, '4.4.2 connection lost after the data') : undefined
    },
  })
  let outcome: Promise<string> | undefined
  const id = await tl.send()
  // The read arrives while the attempt is in flight: the receiver has the data, its answer is not sent yet.
  on.data = () => void (outcome = tl.rig.engine.read(id, 'mdn'))
  await until(() => finals(tl.rig.events)[id] !== undefined, 10_000)
  t.equal(await outcome, 'read')
  t.equal(finals(tl.rig.events)[id], 'read', 'read, not deferred')
  tl.rig.clock.now += 72 * HOUR
  await new Promise((r) => setTimeout(r, 400))
  t.equal(offered, 1, 'never sent again')
})

t.test('M11: a read that comes while the first attempt is under way and then hears its 250 ends it as read (awaiting → inflight → final)', async (t) => {
  // Found under load (check:fresh, evidence.test.ts): the attempt journalled "awaiting" and then ended the
  // statement from there, a move the spool's table does not declare; the statement stayed awaiting while the
  // ledger counted the read, and would have ended unread (paper owed) when its wait ran out.
  const on: { data?: () => void } = {}
  let offered = 0
  const tl = await timeline(t, taipei('2026-11-02T10:00:00'), {
    onData: (_mail, count) => {
      offered = count
      if (count === 1) on.data?.()
      return undefined
    },
  })
  let outcome: Promise<string> | undefined
  const id = await tl.send()
  on.data = () => void (outcome = tl.rig.engine.read(id, 'mdn'))
  await until(() => finals(tl.rig.events)[id] !== undefined, 10_000)
  t.equal(await outcome, 'read')
  t.equal(finals(tl.rig.events)[id], 'read', 'read, not left awaiting')
  // (The final event is in the trail before the journal's line, and the queue lets go after that line.)
  await until(() => tl.rig.spool.entry(id) === undefined, 10_000)
  t.pass('out of the queue')
  tl.rig.clock.now += 72 * HOUR
  await new Promise((r) => setTimeout(r, 400))
  t.equal(offered, 1, 'never sent again')
})

t.test('M11 timeline with kill -9 between the steps: first send, kill, second send, kill, paper owed — never a third send', async (t) => {
  const rx = await startReceiver(t)
  const dir = tempDir(t, 'sg-m11-kill-')
  const [data, hsmDir, clockFile] = [join(dir, 'data'), join(dir, 'hsm'), join(dir, 'clock')]
  mkdirSync(hsmDir)
  const child = fileURLToPath(new URL('../../helpers/receipts-child.ts', import.meta.url))
  let now = taipei('2026-11-02T10:00:00')
  writeFileSync(clockFile, String(now))
  /** Runs the box until an event matches, then kills it with SIGKILL; every event it printed. */
  const runUntil = async (pred: (e: Record<string, unknown>) => boolean, enqueue = false) => {
    const p = spawn(
      process.execPath,
      [child, '--data', data, '--hsm', hsmDir, '--clock', clockFile, '--port', String(rx.port), ...(enqueue ? ['--enqueue', CLASS] : [])],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    )
    const seen: Record<string, unknown>[] = []
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not seen within 30 s; events: ${JSON.stringify(seen.map((e) => e.type))}`)), 30_000)
      let pending = ''
      p.stdout.setEncoding('utf8').on('data', (d: string) => {
        pending += d
        const lines = pending.split('\n')
        pending = lines.pop()!
        for (const l of lines) {
          const e = JSON.parse(l) as Record<string, unknown>
          seen.push(e)
          if (pred(e)) {
            clearTimeout(timer)
            resolve()
          }
        }
      })
      p.on('exit', (code) => reject(new Error(`the box exited (${code}) before the event`)))
    })
    const exited = new Promise((r) => p.once('exit', r))
    p.kill('SIGKILL')
    await exited
    return seen
  }
  const first = await runUntil((e) => e.type === 'spool.awaiting_receipt', true)
  const id = String(first.find((e) => e.type === 'spool.queued')!.id)
  t.equal(rx.received.length, 1, 'first send; then kill -9')

  now += 48 * HOUR + 1000
  writeFileSync(clockFile, String(now))
  const second = await runUntil((e) => e.type === 'spool.awaiting_receipt' && e.sends === 2)
  t.equal(rx.received.length, 2, 'after the restart, the second send when the wait is over; then kill -9')
  t.ok(rx.received[1]!.data.equals(rx.received[0]!.data), 'the same bytes')
  t.notOk(
    second.some((e) => e.type === 'spool.final'),
    'not ended yet',
  )

  now += 48 * HOUR + 1000
  writeFileSync(clockFile, String(now))
  const third = await runUntil((e) => e.type === 'spool.record_shredded' && e.id === id)
  t.match(
    third.find((e) => e.type === 'spool.final'),
    { id, outcome: 'unread', reason: /no read receipt within 48 hours of the second send/ },
  )
  t.equal(rx.received.length, 2, 'never a third send')
})
