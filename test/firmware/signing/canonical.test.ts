import t from 'tap'
import { parseMessage } from '../../../firmware/mime/tree.ts'
import { sevenBitMessage } from '../../../firmware/signing/canonical.ts'
import { boxLeaves, pythonLeaves } from '../../helpers/mime.ts'

const crlf = (s: string) => Buffer.from(s.replace(/\n/g, '\r\n'))
const longest = (b: Buffer) =>
  Math.max(
    ...b
      .toString('latin1')
      .split('\r\n')
      .map((l) => l.length),
  )

t.test('#14 finding 8: body lines over 998 octets are re-encoded before signing; what a reader decodes is unchanged', async (t) => {
  const html = `<html><body>${'<td>一行很長的對帳單</td>'.repeat(400)}</body></html>`
  const original = crlf(
    `From: s@bank.example\nTo: c@example.net\nSubject: long lines\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n\nPreamble kept.\n--b\n` +
      `Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n${html}\n--b\nContent-Type: text/plain\n\nshort and 7-bit\n--b\n` +
      `Content-Type: application/octet-stream; name="x.bin"\nContent-Transfer-Encoding: 8bit\n\n${'\u00ff'.repeat(1200)}\n--b--\n`,
  )
  t.ok(longest(original) > 998, 'the original has a line over 998 octets')
  const safe = sevenBitMessage(original, parseMessage(original))
  t.ok(longest(safe) <= 998, `after: the longest line is ${longest(safe)} octets`)
  t.ok(
    safe.every((b) => b < 0x80),
    'and every byte is 7-bit',
  )
  const s = safe.toString('latin1')
  t.ok(s.startsWith('From: s@bank.example\r\nTo: c@example.net\r\nSubject: long lines\r\n'), 'header fields byte for byte')
  t.match(s, /Preamble kept\.\r\n--b\r\n/, 'preamble and boundaries kept')
  t.match(s, /--b\r\nContent-Type: text\/plain\r\n\r\nshort and 7-bit\r\n--b\r\n/, 'a part already 7-bit is untouched')
  t.match(s, /Content-Type: text\/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n/, 'text becomes quoted-printable')
  t.match(s, /name="x\.bin"\r\nContent-Transfer-Encoding: base64\r\n/, 'anything else base64')
  const [py] = await pythonLeaves([original, safe])
  const box = boxLeaves(safe)
  t.same(box, boxLeaves(original), 'the box decodes the same parts and bytes')
  t.same((await pythonLeaves([safe]))[0]!.default, py!.default, 'and so does Python')
})

t.test('a message already 7-bit is returned as it is (the same buffer)', async (t) => {
  const m = crlf('From: s@bank.example\nSubject: x\n\nhello\n')
  t.equal(sevenBitMessage(m, parseMessage(m)), m)
})
