import { spawn } from 'node:child_process'
import { join } from 'node:path'
import t from 'tap'
import { ServiceNotifier } from '../../firmware/notify.ts'
import { tempDir } from '../helpers/box.ts'
import { spawnDaemon, writeDaemonConfig } from '../helpers/daemon.ts'
import { logSink } from '../helpers/logs.ts'
import { until } from '../helpers/receiver.ts'

/** What systemd would receive: a Unix datagram socket the test binds (with Python, as Node cannot), each message with its arrival time. */
async function notifySocket(t: Parameters<typeof tempDir>[0]) {
  const path = join(tempDir(t, 'sg-notify-'), 'notify.sock')
  const py = spawn('python3', [
    '-c',
    'import json,socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nprint("bound",flush=True)\n' +
      'while True:\n  print(json.dumps(s.recv(65536).decode()),flush=True)',
    path,
  ])
  t.teardown(() => py.kill())
  const got: { at: number; text: string }[] = []
  let bound = false
  let pending = ''
  py.stdout.setEncoding('utf8').on('data', (d: string) => {
    pending += d
    const lines = pending.split('\n')
    pending = lines.pop()!
    for (const l of lines) {
      if (l === 'bound') bound = true
      else got.push({ at: Date.now(), text: JSON.parse(l) as string })
    }
  })
  await until(() => bound, 5000)
  return { path, got }
}

t.test('without NOTIFY_SOCKET (npm start) the notifier does nothing', async (t) => {
  const n = new ServiceNotifier({ env: {}, log: logSink().log })
  t.notOk(n.supervised)
  n.ready('x')
  n.stopping()
  t.equal(n.watchdogMs, undefined)
  t.equal(new ServiceNotifier({ env: { WATCHDOG_USEC: '30000000', WATCHDOG_PID: '1' }, log: logSink().log }).watchdogMs, undefined, 'another process was asked')
  t.equal(new ServiceNotifier({ env: { WATCHDOG_USEC: '30000000' }, log: logSink().log }).watchdogMs, 15000)
})

t.test('S11: READY when the box listens, WATCHDOG pings from the event loop that stop while it is blocked, STOPPING at the stop', async (t) => {
  const sock = await notifySocket(t)
  const cfg = await writeDaemonConfig(t)
  const child = spawnDaemon(t, ['--config', cfg.path], {
    env: { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '600000' },
    nodeArgs: ['--inspect=127.0.0.1:0'],
  })
  await child.waitFor((r) => r.msg === 'statement gateway started', 30_000)
  await until(() => sock.got.some((m) => m.text.startsWith('READY=1')), 5000)
  t.match(sock.got.find((m) => m.text.startsWith('READY=1'))!.text, /^READY=1\nSTATUS=submission on 127\.0\.0\.1:\d+ and \d+; 0 queued$/)
  await until(() => sock.got.filter((m) => m.text === 'WATCHDOG=1').length >= 3, 5000)
  t.pass('pings every 300 ms (half of WATCHDOG_USEC)')

  // Block the daemon's event loop for 2 s through the inspector, as a runaway computation would.
  const ws = new WebSocket(/ws:\/\/127\.0\.0\.1:\d+\/[0-9a-f-]+/.exec(child.stderr())![0])
  await new Promise((r) => ws.addEventListener('open', r, { once: true }))
  const blockedAt = Date.now()
  ws.send(JSON.stringify({ id: 1, method: 'Runtime.evaluate', params: { expression: '{ const end = Date.now() + 2000; while (Date.now() < end); }' } }))
  await new Promise((r) => ws.addEventListener('message', r, { once: true }))
  ws.close()
  const during = sock.got.filter((m) => m.text === 'WATCHDOG=1' && m.at > blockedAt + 400 && m.at < blockedAt + 1900)
  t.equal(during.length, 0, 'no ping while the loop is blocked: systemd would restart the box after WatchdogSec')
  const before = sock.got.length
  await until(() => sock.got.slice(before).some((m) => m.text === 'WATCHDOG=1'), 5000)
  t.pass('pings again once the loop runs')

  child.proc.kill('SIGTERM')
  t.same(await child.exited, { code: 0, signal: null })
  await until(() => sock.got.some((m) => m.text === 'STOPPING=1'), 5000)
  const stop = sock.got.findIndex((m) => m.text === 'STOPPING=1')
  t.notOk(
    sock.got.slice(stop + 1).some((m) => m.text === 'WATCHDOG=1'),
    'no ping after STOPPING',
  )
})
