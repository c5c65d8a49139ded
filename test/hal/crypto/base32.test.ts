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

t.test('#30: only the canonical spelling decodes — every byte string has exactly one', async (t) => {
  // 'mzxw6' is "foo": its last character carries one bit that is not data; only 0 there decodes.
  t.equal(unbase32('mzxw6')!.toString(), 'foo')
  t.equal(unbase32('mzxw7'), undefined, 'leftover bit set')
  for (const s of ['m', 'mzx', 'mzxw6y', 'mzxw6ytbo']) t.equal(unbase32(s), undefined, `${s.length} characters encode no byte string`)
  fc.assert(
    fc.property(fc.stringMatching(/^[a-z2-7]{0,40}$/), (s) => {
      const b = unbase32(s)
      return b === undefined || base32(b) === s
    }),
    { numRuns: 2000 },
  )
  t.pass('whatever decodes is spelled back the same')
})
