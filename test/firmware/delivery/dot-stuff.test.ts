import fc from 'fast-check'
import t from 'tap'
import { dotStuff } from '../../../firmware/delivery/dot-stuff.ts'

t.test('#35 dot-stuffing on the bytes themselves: the same as the RFC 5321 §4.5.2 rule written as text, for any message', async (t) => {
  // The rule as text (as the box once did it, three copies of every mail): the judge.
  const asText = (m: Buffer) => {
    let text = m.toString('latin1').replace(/(^|\r\n)\./g, '$1..')
    if (!text.endsWith('\r\n')) text += '\r\n'
    return Buffer.from(`${text}.\r\n`, 'latin1')
  }
  const alphabet = fc.constantFrom('.', '\r', '\n', '\r\n', '\r\n.', 'a', 'é', '..')
  fc.assert(
    fc.property(fc.array(alphabet, { maxLength: 40 }), (parts) => {
      const m = Buffer.from(parts.join(''), 'latin1')
      return Buffer.concat(dotStuff(m)).equals(asText(m))
    }),
    { numRuns: 2000 },
  )
  const big = Buffer.alloc(60 * 1024, 'x')
  const pieces = dotStuff(big)
  t.equal(pieces[0]!.buffer, big.buffer, 'a message without a leading dot goes out as itself, not a copy')
  t.equal(Buffer.concat(pieces).toString('latin1'), `${big.toString('latin1')}\r\n.\r\n`)
})
