import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { passwordHashProblem, verifyPassword } from '../../hal/crypto/password.ts'

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
  t.match(usage.stderr, /usage: npm run account -- hash/)
})
