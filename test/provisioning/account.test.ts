import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import t from 'tap'
import { passwordHashProblem, verifyPassword } from '../../hal/crypto/password.ts'
import { oneTimeCodeIn } from '../helpers/admin.ts'
import { trailText } from '../helpers/audit.ts'
import { spawnDaemon, writeDaemonConfig } from '../helpers/daemon.ts'

const TOOL = fileURLToPath(new URL('../../provisioning/account.ts', import.meta.url))
const account = (args: string[], input: string) => spawnSync(process.execPath, [TOOL, ...args], { input, encoding: 'utf8' })

t.test('npm run account -- hash: the password from stdin, never the command line; the hash is one config accepts', async (t) => {
  const r = account(['hash'], 'correct horse battery staple 9!\n')
  t.equal(r.status, 0, r.stderr)
  const hash = r.stdout.trim()
  t.equal(passwordHashProblem(hash), undefined)
  t.ok(await verifyPassword('correct horse battery staple 9!', hash), 'the trailing newline is not part of the password')
  t.notMatch(r.stdout + r.stderr, /correct horse/, 'the password is not echoed')
})

t.test('a short password or a wrong command is refused with a reason', async (t) => {
  const short = account(['hash'], 'short\n')
  t.equal(short.status, 1)
  t.match(short.stderr, /at least 12 characters/)
  const usage = account(['make'], '')
  t.equal(usage.status, 2)
  t.match(usage.stderr, /usage: npm run account -- <command>/)
  t.match(usage.stderr, /enrol NAME/)
})

t.test("#31, S5: with the box stopped, the console enrols on the box's own files and writes the audit trail itself", async (t) => {
  const cfg = await writeDaemonConfig(t)
  const tool = (...args: string[]) => account([...args, '--config', cfg.path], '')
  const before = tool('enrol', 'carol')
  t.equal(before.status, 1)
  t.match(before.stderr, /^account: this box has not started yet .*\n$/, 'before the first start: nothing to act on, said in one line')
  // The box's first start makes its keys; then it stops.
  const box = spawnDaemon(t, ['--config', cfg.path])
  await box.waitFor((r) => r.msg === 'admin page listening', 30_000)
  box.proc.kill('SIGTERM')
  await box.exited
  const first = tool('enrol', 'carol')
  t.equal(first.status, 0, first.stderr)
  t.match(first.stdout, /account carol \(admin\) made; the person sets their password with this one-time code at \/welcome/)
  t.doesNotThrow(() => oneTimeCodeIn(first.stdout), 'the one-time code is printed, for the person')
  t.equal(tool('enrol', 'carol').status, 1, 'the name is taken')
  t.match(tool('enrol', 'dave', '--role', 'root').stderr, /no such role: root/)
  const notLocked = tool('unlock', 'carol', '--code', '123456')
  t.equal(notLocked.status, 1)
  t.match(notLocked.stderr, /^account: carol is not locked\.\n$/, 'one line, no stack')
  t.match(tool('unlock', 'nobody', '--code', '123456').stderr, /^account: No account named nobody\.\n$/)
  t.match(tool('unlock', 'nobody', '--re-enrol').stderr, /say why/)
  const trail = trailText(join(cfg.dataDir, 'audit'))
  t.match(trail, /"type":"admin\.action".*"action":"user\.create".*"target":"carol"/, 'the enrolment is in the trail')
  t.match(trail, /console:/, 'as done at the console')
})
