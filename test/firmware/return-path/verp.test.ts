import fc from 'fast-check'
import t from 'tap'
import { BOX_KEYS } from '../../../firmware/keys/manifest.ts'
import { unbase32 } from '../../../hal/crypto/base32.ts'
import { ReturnPathTokens } from '../../../firmware/return-path/verp.ts'
import { newQueueId } from '../../../firmware/spool/ids.ts'
import { devHsm } from '../../helpers/hsm.ts'

t.test('M8, S2: a return-path token names its queue id and recipient, reads nothing, and cannot be forged (HMAC)', async (t) => {
  const { hsm } = await devHsm(t)
  await hsm.ensureKeys(BOX_KEYS)
  const tokens = new ReturnPathTokens(hsm)
  await tokens.keys()
  const id = newQueueId()
  const b = tokens.localPart({ kind: 'b', id, recipient: 3 })
  t.match(b, /^b-[a-z2-7]+$/, 'lower-case base32: survives servers that lower-case local parts')
  t.ok(b.length <= 64, `${b.length} characters: within a local part's 64`)
  t.notOk(b.includes(id.toLowerCase().slice(0, 6)), 'the queue id is not readable in it')
  t.equal(tokens.localPart({ kind: 'b', id, recipient: 3 }), b, 'the same on every retry')
  t.same(await tokens.open(b), { kind: 'b', id, recipient: 3 })
  t.same(await tokens.open(b.toUpperCase()), { kind: 'b', id, recipient: 3 }, 'case does not matter')
  const r = tokens.localPart({ kind: 'r', id, recipient: 3 })
  t.same(await tokens.open(r), { kind: 'r', id, recipient: 3 }, 'a read-receipt token')
  t.equal(await tokens.open(`r${b.slice(1)}`), 'forged', 'a bounce token is not a read-receipt token')
  t.not(tokens.localPart({ kind: 'b', id, recipient: 4 }), b, 'each recipient its own')

  // Any change to a token is caught by its 80-bit tag, or is not a spelling of any token at all.
  await fc.assert(
    fc.asyncProperty(fc.nat(b.length - 2), fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz234567'), async (at, ch) => {
      const i = at + 2
      const changed = b.slice(0, i) + ch + b.slice(i + 1)
      const opened = await tokens.open(changed)
      if (changed === b) return typeof opened === 'object' && opened.id === id
      return opened === (unbase32(changed.slice(2)) ? 'forged' : 'malformed')
    }),
    { numRuns: 300 },
  )
  // #30: of the 32 characters the last position can take, exactly one opens (the token's own).
  const opens = []
  for (const ch of 'abcdefghijklmnopqrstuvwxyz234567') {
    const o = await tokens.open(b.slice(0, -1) + ch)
    if (typeof o === 'object') opens.push(ch)
  }
  t.same(opens, [b.at(-1)], `one of 32 last-character spellings opens (${opens.join(', ')})`)
  for (const bad of ['postmaster', 'b-', 'b-0189', 'x-abcdefghijklmnopqrstu', `b-${'a'.repeat(70)}`]) t.equal(await tokens.open(bad), 'malformed', bad)
  t.throws(() => tokens.localPart({ kind: 'b', id: 'not a queue id!', recipient: 0 }), /not a queue id/)

  const other = new ReturnPathTokens(hsm)
  t.same(await other.open(b), { kind: 'b', id, recipient: 3 }, 'the keys live in the HSM: another instance (a restart) reads it')
})
