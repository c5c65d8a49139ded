import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { ACCOUNT } from '../helpers/box.ts'
import { spawnDaemon, writeDaemonConfig } from '../helpers/daemon.ts'
import { run } from '../helpers/hsm.ts'
import { RawSmtp } from '../helpers/smtp.ts'
import { tempDir } from '../helpers/box.ts'

const CLI = fileURLToPath(new URL('../../provisioning/audit.ts', import.meta.url))
const audit = (config: string, ...args: string[]) =>
  run(process.execPath, [CLI, ...args, '--config', config]).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  )

t.test('S6: the running box records logins in its trail; the audit CLI verifies, searches and exports it', async (t) => {
  const cfg = await writeDaemonConfig(t)
  const child = spawnDaemon(t, ['--config', cfg.path])
  const listening = (await child.waitFor((r) => r.msg === 'submission listening')) as unknown as { starttls: { port: number } }
  const c = await RawSmtp.open(listening.starttls.port)
  await c.handshake({ ca: readFileSync(join(cfg.dataDir, 'tls', 'submission.crt')), servername: 'localhost' })
  t.equal((await c.authPlain(ACCOUNT.name, 'not the password')).code, 535)
  t.equal((await c.authPlain(ACCOUNT.name, ACCOUNT.password)).code, 235)
  c.close()
  await child.waitFor((r) => r.msg === 'auth succeeded')
  child.proc.kill('SIGTERM')
  t.same(await child.exited, { code: 0, signal: null })

  const verified = await audit(cfg.path, 'verify')
  t.equal(verified.code, 0, verified.stderr)
  t.match(verified.stdout, /^OK: \d+ records \(seq 1–\d+\), \d+ signed checkpoints, covered to seq (\d+)/)

  const found = await audit(cfg.path, 'search', '--type', 'submission.auth')
  const logins = found.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
  t.match(logins, [
    { outcome: 'failure', reason: 'bad-password', account: ACCOUNT.name },
    { outcome: 'success', account: ACCOUNT.name },
  ])
  t.ok((await audit(cfg.path, 'search', '--type', 'hsm.status')).stdout.includes('"state":"ok"'), 'the HSM becoming ready is recorded too')
  const config = (await audit(cfg.path, 'search', '--type', 'config.changed')).stdout.trim().split('\n')
  t.equal(config.length, 1, 'S7: the configuration the box started on is recorded once')
  t.notMatch(config[0]!, /\$scrypt\$/, 'without password hashes')

  const out = join(tempDir(t), 'export')
  const exported = await audit(cfg.path, 'export', '--out', out)
  t.equal(exported.code, 0, exported.stderr)
  const sh = await run('sh', [join(out, 'verify.sh')])
  t.match(sh.stdout, /^OK: records up to seq \d+ form an unbroken chain/)

  const hash = await audit(cfg.path, 'hash', 'Customer@Example.net')
  t.match(hash.stdout, /^[0-9a-f]{64}\n$/)
  const pub = await audit(cfg.path, 'pubkey')
  t.match(pub.stdout, /-----BEGIN PUBLIC KEY-----[\s\S]+SHA-256 fingerprint .*: [0-9a-f]{64}\n$/)
  t.equal(readFileSync(join(out, 'checkpoint-key.pem'), 'utf8'), pub.stdout.slice(0, pub.stdout.indexOf('SHA-256')), 'the bundle carries the HSM key')

  const bad = await audit(cfg.path, 'verify', '--from', 'yesterday')
  t.equal(bad.code, 2)
  t.match(bad.stderr, /"yesterday" is not a day/)
})
