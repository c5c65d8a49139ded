import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ACCOUNT } from '../../helpers/box.ts'
import { spawnDaemon, writeDaemonConfig } from '../../helpers/daemon.ts'
import { startReceiver, until } from '../../helpers/receiver.ts'
import { RawSmtp } from '../../helpers/smtp.ts'

/** Submits one mail on its own connection; resolves with the queue id from a 250, or undefined. */
async function submitOne(port: number, tls: object, n: number): Promise<string | undefined> {
  try {
    const c = await RawSmtp.open(port)
    await c.handshake(tls)
    await c.authPlain(ACCOUNT.name, ACCOUNT.password)
    await c.cmd('MAIL FROM:<statements@bank.example>')
    await c.cmd(`RCPT TO:<customer${n}@example.net>`)
    await c.cmd('DATA')
    c.write(
      `From: statements@bank.example\r\nTo: customer${n}@example.net\r\nSubject: statement ${n}\r\n\r\nstatement body number ${n}\r\n${'filler line\r\n'.repeat(200)}`,
    )
    await new Promise((r) => setTimeout(r, Math.random() * 20)) // some are mid-DATA when the kill comes
    c.write('.\r\n')
    const r = await c.reply()
    c.close()
    return r.code === 250 ? /queued as (\S+)/.exec(r.text)?.[1] : undefined
  } catch {
    return undefined
  }
}

t.test('S12: kill -9 at random points (during DATA, after 250, mid-delivery); every mail that got a 250 is delivered at least once', async (t) => {
  const rx = await startReceiver(t, { host: '127.0.0.7' })
  const cfg = await writeDaemonConfig(t, {
    spool: { verifyOnStart: false },
    delivery: { routes: [{ domain: '*', host: '127.0.0.7', port: rx.port }], retrySeconds: [1] },
  })
  const acked = new Map<string, number>()
  for (let round = 0; round < 3; round++) {
    const child = spawnDaemon(t, ['--config', cfg.path])
    const l = (await child.waitFor((r) => r.msg === 'submission listening')) as unknown as { starttls: { port: number } }
    const tls = { ca: readFileSync(join(cfg.dataDir, 'tls', 'submission.crt')), servername: 'localhost' }
    const sends = Array.from({ length: 30 }, (_, i) => {
      const n = round * 100 + i
      return submitOne(l.starttls.port, tls, n).then((id) => id && acked.set(id, n))
    })
    // Kill at a random moment while submissions are in full swing: after a few
    // acknowledgements, with others mid-DATA or just answered.
    const before = acked.size
    const deadline = Date.now() + 20_000
    while (acked.size < before + 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    await new Promise((r) => setTimeout(r, Math.random() * 60))
    child.proc.kill('SIGKILL')
    await Promise.all(sends)
    await child.exited
  }
  t.ok(acked.size > 0, `${acked.size} mails were acknowledged with 250 across the kills`)
  const deliveredBeforeRestart = rx.received.length

  // Restart and let the box drain.
  const child = spawnDaemon(t, ['--config', cfg.path])
  await child.waitFor((r) => r.msg === 'spool ready')
  const numbers = () => new Set(rx.received.map((r) => Number(/statement body number (\d+)/.exec(r.data.toString())?.[1])))
  await until(() => [...acked.values()].every((n) => numbers().has(n)), 60_000).catch(() => undefined)
  child.proc.kill('SIGTERM')
  await child.exited
  const got = numbers()
  const missing = [...acked.values()].filter((n) => !got.has(n))
  t.same(missing, [], 'every acknowledged mail reached the receiving MX')
  for (const r of rx.received) {
    const n = Number(/statement body number (\d+)/.exec(r.data.toString())?.[1])
    if (r.rcptTo[0] !== `customer${n}@example.net`) t.fail(`mail ${n} arrived for the wrong recipient`)
  }
  const duplicates = rx.received.length - got.size
  t.comment(
    `${acked.size} acknowledged, ${rx.received.length} deliveries (${deliveredBeforeRestart} before the final restart), ${duplicates} duplicates (mail in flight at a kill)`,
  )
  t.ok(duplicates <= 3 * 16, 'duplicates only from mail in flight at the kills')
})
