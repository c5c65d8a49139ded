import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { Hsm } from '../../../hal/hsm/index.ts'
import { ACCOUNT } from '../../helpers/box.ts'
import { spawnDaemon, writeDaemonConfig } from '../../helpers/daemon.ts'
import { spoolRig } from '../../helpers/spool.ts'
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
    c.write(`From: statements@bank.example\r\nTo: customer${n}@example.net\r\nSubject: statement ${n}\r\n\r\nstatement body number ${n}\r\n${'filler line\r\n'.repeat(200)}`)
    await new Promise((r) => setTimeout(r, Math.random() * 20)) // some are mid-DATA when the kill comes
    c.write('.\r\n')
    const r = await c.reply()
    c.close()
    return r.code === 250 ? /queued as (\S+)/.exec(r.text)?.[1] : undefined
  } catch {
    return undefined
  }
}

t.test('S12: kill -9 at random points; every mail that got a 250 is in the spool after restart, intact', async (t) => {
  const cfg = await writeDaemonConfig(t, { spool: { verifyOnStart: false } })
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

  // Open the spool the way the box does after a restart, and check each acknowledged mail.
  const hsm = new Hsm({ module: '', tokenLabel: 'statement-gateway', pinFile: '', sessions: 2, reconnectIntervalMs: 1000, devDir: join(cfg.dataDir, 'hsm'), clock: { now: () => Date.now() } })
  await hsm.open()
  t.teardown(() => hsm.close())
  const rig = await spoolRig(t, hsm, cfg.dataDir)
  let intact = 0
  for (const [id, n] of acked) {
    const e = rig.spool.entry(id)
    if (!e) {
      t.fail(`acknowledged mail ${id} (#${n}) is missing after the crash`)
      continue
    }
    const m = await rig.spool.read(id)
    if (m.message.toString().includes(`statement body number ${n}\r\n`) && m.envelope.rcptTo[0] === `customer${n}@example.net`) intact++
  }
  t.equal(intact, acked.size, 'every acknowledged mail is present and decrypts to what was sent')
})
