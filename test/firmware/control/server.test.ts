import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { statSync } from 'node:fs'
import { createConnection } from 'node:net'
import t from 'tap'
import { parseConfig } from '../../../firmware/config/load.ts'
import { ControlServer, controlRequests, type ControlReply } from '../../../firmware/control/server.ts'
import type { BoxEvent } from '../../../firmware/events.ts'
import { tempDir } from '../../helpers/box.ts'
import { devHsm } from '../../helpers/hsm.ts'
import { logSink } from '../../helpers/logs.ts'
import { mail, spoolRig } from '../../helpers/spool.ts'

async function rig(t: { teardown(fn: () => unknown): void }) {
  const { hsm } = await devHsm(t)
  const dataDir = tempDir(t)
  const s = await spoolRig(t, hsm, dataDir)
  const config = parseConfig({ dataDir })
  const events: BoxEvent[] = []
  const control = new ControlServer({ config, log: logSink().log, spool: s.spool, events: { emit: (e) => void events.push(e) } })
  await control.start()
  t.teardown(() => control.stop())
  const ask = async (cmd: string, args?: Record<string, unknown>): Promise<ControlReply> =>
    (await controlRequests(control.path, [{ cmd, args, who: 'alice' }]))[0]!
  return { ...s, control, events, ask, dataDir, config }
}

t.test('the control socket is 0600 in the data directory', async (t) => {
  const r = await rig(t)
  const st = statSync(r.control.path)
  t.ok(st.isSocket())
  t.equal(st.mode & 0o777, 0o600, 'only the box user (and root) can connect')
})

t.test('queue: summary, list by state, show (masked, no content), hold, release, retry — each an audited admin action', async (t) => {
  const r = await rig(t)
  const a = mail('Secret statement body', 'alice.wang@example.net')
  const withTags = mail('x')
  const b = { ...withTags, message: Buffer.from(`X-Statement-ID: S-2026-11-000123\r\nX-Statement-Class: monthly\r\n${withTags.message.toString()}`) }
  await r.spool.accept(a)
  await r.spool.accept(b)
  r.spool.due(r.clock.now, 1) // a in flight
  await r.spool.defer(a.envelope.id, r.clock.now + 3_600_000, '451 later')

  t.match(await r.ask('queue.summary'), { ok: true, result: { total: 2, queued: 1, deferred: 1, held: 0, inflight: 0 } })
  const deferred = await r.ask('queue.list', { state: 'deferred' })
  t.match(deferred, { ok: true, result: [{ id: a.envelope.id, state: 'deferred', attempts: 1 }] })
  t.equal((deferred as { result: unknown[] }).result.length, 1)

  const shown = await r.ask('queue.show', { id: b.envelope.id })
  t.match(shown, {
    ok: true,
    result: {
      id: b.envelope.id,
      state: 'queued',
      from: 's****s@bank.example',
      recipients: [{ address: 'c****r@example.net', state: 'pending' }],
      statementId: 'S-2026-11-000123',
      statementClass: 'monthly',
    },
  })
  const shownA = JSON.stringify(await r.ask('queue.show', { id: a.envelope.id }))
  t.notMatch(shownA, /alice\.wang|Secret statement body/, "no clear address and no content on the operator's screen")

  t.match(await r.ask('queue.hold', { id: b.envelope.id }), { ok: true, result: { state: 'held' } })
  t.same(r.spool.due(r.clock.now, 10), [], 'a held mail is not delivered')
  t.match(await r.ask('queue.hold', { id: b.envelope.id }), { ok: false, error: /already held/ })
  t.match(await r.ask('queue.release', { id: b.envelope.id }), { ok: true, result: { state: 'deferred' } })
  t.match(await r.ask('queue.retry', { id: a.envelope.id }), { ok: true, result: { state: 'deferred' } })
  t.same(
    r.spool
      .due(r.clock.now, 10)
      .map((e) => e.id)
      .sort(),
    [a.envelope.id, b.envelope.id].sort(),
    'released and retried mail is due now',
  )

  t.match(await r.ask('queue.hold', { id: a.envelope.id }), { ok: false, error: /being delivered right now/ }, 'in flight: refused, not raced')
  t.match(await r.ask('queue.release', { id: 'nope' }), { ok: false, error: /no queued mail nope/ })
  t.match(await r.ask('queue.list', { state: 'lost' }), { ok: false, error: /unknown state "lost"/ })
  t.match(await r.ask('queue.list', { offset: -1 }), { ok: false, error: /offset must be/ })
  t.match(await r.ask('queue.delete', { id: a.envelope.id }), { ok: false, error: /unknown command "queue.delete"/ })

  const actions = r.events.filter((e) => e.type === 'admin.action')
  t.equal(actions.length, 13, 'every request, read-only and refused ones included, is audited')
  t.match(
    actions.find((e) => e.action === 'queue.hold'),
    { who: 'alice', via: 'control-socket', target: b.envelope.id, outcome: 'ok' },
  )
  t.match(
    actions.find((e) => e.outcome === 'refused' && e.action === 'queue.hold' && e.target === a.envelope.id),
    { reason: /being delivered/ },
  )
})

t.test('held and retried states survive a restart of the spool', async (t) => {
  const r = await rig(t)
  const m = mail('x')
  await r.spool.accept(m)
  await r.ask('queue.hold', { id: m.envelope.id })
  const again = await r.restart()
  t.match(again.spool.entry(m.envelope.id), { state: 'held' })
})

t.test('bad requests get an error line, not a dropped connection', async (t) => {
  const r = await rig(t)
  const replies = await new Promise<string[]>((resolve) => {
    const c = createConnection(r.control.path)
    let text = ''
    c.setEncoding('utf8')
    c.on('connect', () => c.write('not json\n{"cmd":"queue.summary"}\n'))
    c.on('data', (d: string) => {
      text += d
      if (text.split('\n').length > 2) {
        c.end()
        resolve(text.trim().split('\n'))
      }
    })
  })
  t.match(JSON.parse(replies[0]!), { ok: false, error: /not a JSON request/ })
  t.match(JSON.parse(replies[1]!), { ok: true, result: { total: 0 } }, 'the connection stays usable, replies in order')
  t.match(r.events.at(-1), { type: 'admin.action', who: 'unknown', action: 'queue.summary' }, 'no login claimed: recorded as unknown')
})

t.test('a second box on the same data directory is refused; a socket file left by a crash is not in the way', async (t) => {
  const r = await rig(t)
  const second = new ControlServer({ config: r.config, log: logSink().log, spool: r.spool, events: { emit() {} } })
  await t.rejects(second.start(), /another box is running/)
  await r.control.stop()
  // A box killed with SIGKILL leaves its socket file behind, with nobody listening on it.
  spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(r.control.path)}, () => process.kill(process.pid, 'SIGKILL'))`])
  t.ok(statSync(r.control.path).isSocket(), 'a dead socket file is there')
  const third = new ControlServer({ config: r.config, log: logSink().log, spool: r.spool, events: { emit() {} } })
  await third.start()
  t.teardown(() => third.stop())
  t.match((await controlRequests(third.path, [{ cmd: 'queue.summary' }]))[0], { ok: true })
})

t.test('the client says plainly when the box is not running', async (t) => {
  const dir = tempDir(t)
  await t.rejects(controlRequests(`${dir}/control.sock`, [{ cmd: 'queue.summary' }]), /the box is not running/)
})

t.test('admin.record: a tool reports what it did; recorded once, as given, and only when well-formed', async (t) => {
  const r = await rig(t)
  t.match(await r.ask('admin.record', { action: 'hsm.import-cert', target: 'smime/bank', outcome: 'ok', detail: 'CN=Bank; serial 01' }), { ok: true })
  t.match(await r.ask('admin.record', { action: 'Rm -rf', outcome: 'ok' }), { ok: false, error: /needs an "action"/ })
  t.match(await r.ask('admin.record', { action: 'hsm.csr', outcome: 'maybe' }), { ok: false })
  t.match(await r.ask('admin.record', { action: 'hsm.csr', outcome: 'ok', detail: 'line\r\nInjected: yes' }), { ok: true })
  const actions = r.events.filter((e) => e.type === 'admin.action')
  t.equal(actions.length, 2, 'no extra record for the request itself, none for malformed ones')
  t.match(actions[0], { who: 'alice', via: 'cli', action: 'hsm.import-cert', target: 'smime/bank', outcome: 'ok', detail: 'CN=Bank; serial 01' })
  t.equal((actions[1] as { detail?: string }).detail, undefined, 'a field with a line break is dropped, not stored')
})

t.test('a request longer than 64 KB is answered with an error and the connection closed', async (t) => {
  const r = await rig(t)
  const reply = await new Promise<string>((resolve) => {
    const c = createConnection(r.control.path)
    let text = ''
    c.setEncoding('utf8')
    c.on('connect', () => c.write('x'.repeat(70 * 1024)))
    c.on('data', (d: string) => (text += d))
    c.on('close', () => resolve(text))
    c.on('error', () => resolve(text))
  })
  t.match(JSON.parse(reply.trim()), { ok: false, error: 'request too long' })
})

t.test('a data directory too deep for a Unix socket path is reported plainly', async (t) => {
  const { hsm } = await devHsm(t)
  const deep = join(tempDir(t), 'd'.repeat(60), 'e'.repeat(60))
  const s = await spoolRig(t, hsm, tempDir(t))
  const control = new ControlServer({ config: parseConfig({ dataDir: deep }), log: logSink().log, spool: s.spool, events: { emit() {} } })
  await t.rejects(control.start(), /longer than a Unix socket allows \(107 bytes\); choose a shorter dataDir/)
})

t.test('queue.remove: only a held mail, only with a one-line reason, carried out by the delivery side', async (t) => {
  const { hsm } = await devHsm(t)
  const dataDir = tempDir(t)
  const s = await spoolRig(t, hsm, dataDir)
  const removed: string[] = []
  const control = new ControlServer({
    config: parseConfig({ dataDir }),
    log: logSink().log,
    spool: s.spool,
    events: { emit() {} },
    remove: async (id, who, reason) => {
      removed.push(`${id} ${who} ${reason}`)
      await s.spool.finish(id, 'removed', reason)
    },
  })
  await control.start()
  t.teardown(() => control.stop())
  const ask = async (cmd: string, args: Record<string, unknown>) => (await controlRequests(control.path, [{ cmd, args, who: 'bob' }]))[0]!
  const m = mail('x')
  await s.spool.accept(m)
  t.match(await ask('queue.remove', { id: m.envelope.id, reason: 'wrong customer' }), { ok: false, error: /is queued; hold it first/ })
  await ask('queue.hold', { id: m.envelope.id })
  t.match(await ask('queue.remove', { id: m.envelope.id }), { ok: false, error: /a "reason" is needed/ })
  t.match(await ask('queue.remove', { id: m.envelope.id, reason: 'two\nlines' }), { ok: false, error: /a "reason" is needed/ })
  t.match(await ask('queue.remove', { id: m.envelope.id, reason: ' wrong customer ' }), { ok: true, result: { state: 'removed' } })
  t.same(removed, [`${m.envelope.id} bob wrong customer`])
  t.equal(s.spool.entry(m.envelope.id), undefined)
})

t.test('M11: a statement awaiting its read receipt is listed with its next step, and cannot be held', async (t) => {
  const r = await rig(t)
  const m = mail('x')
  await r.spool.accept(m)
  r.spool.due(r.clock.now, 1)
  const until = r.clock.now + 48 * 3_600_000
  await r.spool.awaitReceipt(m.envelope.id, until, { sends: 1, firstSentAt: r.clock.now }, until + 86_400_000)
  t.match(await r.ask('queue.summary'), { ok: true, result: { total: 1, awaiting: 1 } })
  t.match(await r.ask('queue.list', { state: 'awaiting' }), {
    ok: true,
    result: [{ id: m.envelope.id, state: 'awaiting', nextAttemptAt: new Date(until).toISOString() }],
  })
  t.match(await r.ask('queue.hold', { id: m.envelope.id }), { ok: false, error: /awaits its read receipt \(M11\); there is nothing to hold/ })
})
