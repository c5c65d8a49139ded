import fc from 'fast-check'
import t from 'tap'
import { base32, unbase32 } from '../../../hal/crypto/base32.ts'

t.test('RFC 4648 10: the test vectors, in lower case without padding', async (t) => {
  const vectors: [string, string][] = [
    ['', ''],
    ['f', 'my'],
    ['fo', 'mzxq'],
    ['foo', 'mzxw6'],
    ['foob', 'mzxw6yq'],
    ['fooba', 'mzxw6ytb'],
    ['foobar', 'mzxw6ytboi'],
  ]
  for (const [plain, coded] of vectors) {
    t.equal(base32(Buffer.from(plain)), coded, plain)
    t.equal(unbase32(coded)!.toString(), plain)
  }
})

t.test('base32 round trip', async (t) => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 40 }), (a) => unbase32(base32(Buffer.from(a)))!.equals(Buffer.from(a))))
  t.equal(unbase32('A1'), undefined)
  t.pass('round trips')
})
