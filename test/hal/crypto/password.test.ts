import t from 'tap'
import { hashPassword, passwordHashProblem, verifyPassword } from '../../../hal/crypto/password.ts'
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
