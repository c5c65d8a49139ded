import t from 'tap'
import { FailureLimiter } from '../../../firmware/submission/auth.ts'
import { hashPassword, passwordHashProblem, verifyPassword } from '../../../firmware/submission/password.ts'
import { TEST_HASH_PARAMS } from '../../helpers/box.ts'

t.test('scrypt hashes: salted, verifiable, never equal for the same password', async (t) => {
  const a = await hashPassword('s3cret password!', TEST_HASH_PARAMS)
  const b = await hashPassword('s3cret password!', TEST_HASH_PARAMS)
  t.not(a, b, 'salted')
  t.match(a, /^\$scrypt\$ln=14,r=8,p=1\$/)
  t.equal(passwordHashProblem(a), undefined)
  t.ok(await verifyPassword('s3cret password!', a))
  t.notOk(await verifyPassword('s3cret password?', a))
  t.notOk(await verifyPassword('s3cret password!', 'garbage'))
  t.match(passwordHashProblem('$scrypt$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$' + 'A'.repeat(43) + '='), /outside 14…22/)
})

t.test('failure limiter: counts in a window, blocks, forgets after the block', async (t) => {
  let now = 0
  const l = new FailureLimiter({ max: 3, windowMs: 1000, blockMs: 5000 }, { now: () => now })
  t.notOk(l.fail('ip:a'))
  now = 900
  t.notOk(l.fail('ip:a'))
  now = 1500 // the first failure has left the window
  t.notOk(l.fail('ip:a'))
  t.notOk(l.blocked('ip:a'))
  t.ok(l.fail('ip:a'), 'third failure inside the window blocks')
  t.ok(l.blocked('ip:a'))
  t.notOk(l.blocked('ip:b'), 'other keys unaffected')
  now = 6499
  t.ok(l.blocked('ip:a'))
  now = 6500
  t.notOk(l.blocked('ip:a'))
  l.fail('ip:c')
  l.succeed('ip:c')
  t.notOk(l.fail('ip:c'), 'success resets the count')
})
