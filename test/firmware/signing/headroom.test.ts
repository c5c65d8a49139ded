import { randomBytes } from 'node:crypto'
import t from 'tap'
import { concatWithHeadroom, prepend } from '../../../firmware/signing/headroom.ts'

t.test('#35: parts joined with headroom are the bytes Buffer.concat makes', async (t) => {
  const parts = [randomBytes(10), Buffer.alloc(0), randomBytes(70_000), Buffer.from('end')]
  const joined = concatWithHeadroom(parts, 64)
  t.ok(joined.equals(Buffer.concat(parts)))
  t.equal(joined.byteOffset, 64, 'the room lies in front, in the same memory')
})

t.test('#35: a header goes into the room without copying the body; the room is used once', async (t) => {
  const body = concatWithHeadroom([Buffer.from('body\r\n')], 16)
  const first = prepend(Buffer.from('A: 1\r\n'), body)
  t.equal(first.toString(), 'A: 1\r\nbody\r\n')
  t.equal(first.buffer, body.buffer, 'the same memory: nothing copied')
  const second = prepend(Buffer.from('B: 2\r\n'), first)
  t.equal(second.toString(), 'B: 2\r\nA: 1\r\nbody\r\n', 'a second header uses what room is left')
  t.equal(second.buffer, body.buffer)
  // The room in front of `body` now holds the headers: prepending to `body` again must not write there.
  const again = prepend(Buffer.from('C: 3\r\n'), body)
  t.equal(again.toString(), 'C: 3\r\nbody\r\n')
  t.not(again.buffer, body.buffer, 'a copy, not the used room')
  t.equal(second.toString(), 'B: 2\r\nA: 1\r\nbody\r\n', 'and the earlier result is unchanged')
})

t.test('#35: a header larger than the room left, or a buffer without room, is joined by copying', async (t) => {
  const body = concatWithHeadroom([Buffer.from('x')], 4)
  const big = prepend(Buffer.from('too long\r\n'), body)
  t.equal(big.toString(), 'too long\r\nx')
  t.not(big.buffer, body.buffer)
  const plain = Buffer.from('plain')
  t.equal(prepend(Buffer.from('H: '), plain).toString(), 'H: plain')
  t.equal(plain.toString(), 'plain')
})
