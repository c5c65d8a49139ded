import fc from 'fast-check'
import t from 'tap'
import { base64Lines, base64Problem, decodeQuotedPrintable, isSevenBitSafe, quotedPrintable, toCrlf } from '../../../firmware/mime/encode.ts'
import { pythonEach } from '../../helpers/python.ts'

const b64 = (b: Buffer) => b.toString('base64')

t.test("quoted-printable decoding is Python's binascii.a2b_qp, byte for byte, on hostile input", async (t) => {
  // QP-ish text: escapes good and broken, soft breaks, bare "=", whitespace at line ends, 8-bit bytes.
  const piece = fc.oneof(
    fc.constantFrom('=', '==', '=\r\n', '=\n', '= \r\n', '=4', '=4G', '=41', '=e9', '=E9', '=\t', ' \r\n', '\t\r\n', '\r\n', '\n', '\r'),
    fc.uint8Array({ minLength: 1, maxLength: 6 }).map((a) => Buffer.from(a).toString('latin1')),
    fc.string({ maxLength: 8 }),
  )
  const inputs = fc.sample(
    fc.array(piece, { maxLength: 30 }).map((p) => Buffer.from(p.join(''), 'latin1')),
    { numRuns: 1500, seed: 2045 },
  )
  const python = pythonEach<string, string>(
    'import base64, binascii\ndef judge(x):\n    return base64.b64encode(binascii.a2b_qp(base64.b64decode(x))).decode()',
    inputs.map(b64),
  )
  const disagree = inputs.filter((b, i) => b64(decodeQuotedPrintable(b)) !== python[i])
  t.same(disagree.map((b) => b.toString('latin1')).slice(0, 5), [], `${inputs.length} inputs, ${disagree.length} read differently`)
})

t.test('quoted-printable encoding: lines within 76 characters, 7-bit, and Python decodes it back to the text', async (t) => {
  const lines = fc.array(
    fc.uint8Array({ maxLength: 200 }).map((a) =>
      Buffer.from(a)
        .toString('latin1')
        .replace(/[\r\n]/g, ''),
    ),
    { minLength: 1, maxLength: 6 },
  )
  const texts = fc.sample(
    lines.map((l) => Buffer.from(l.join('\r\n'), 'latin1')),
    { numRuns: 500, seed: 2046 },
  )
  const encoded = texts.map(quotedPrintable)
  t.ok(
    encoded.every((e) =>
      e
        .toString('latin1')
        .split('\r\n')
        .every((l) => l.length <= 76),
    ),
    'no encoded line over 76',
  )
  t.ok(encoded.every((e) => isSevenBitSafe(e)))
  const python = pythonEach<string, string>(
    'import base64, quopri\ndef judge(x):\n    return base64.b64encode(quopri.decodestring(base64.b64decode(x))).decode()',
    encoded.map(b64),
  )
  const wrong = texts.filter((text, i) => b64(text) !== python[i] || !decodeQuotedPrintable(encoded[i]!).equals(text))
  t.equal(wrong.length, 0, `${texts.length} texts round-trip through Python's quopri and our decoder`)
})

t.test('base64 in 76-character lines decodes (Python, strict) to the same bytes', async (t) => {
  const data = fc.sample(
    fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)),
    { numRuns: 300, seed: 2047 },
  )
  const lines = data.map(base64Lines)
  t.ok(
    lines.every((l) =>
      l
        .toString()
        .split('\r\n')
        .every((x) => x.length <= 76),
    ),
  )
  t.ok(
    lines.every((l) => base64Problem(l) === undefined),
    'what the box writes, it accepts',
  )
  const python = pythonEach<string, string>(
    'import base64\ndef judge(x):\n    raw = base64.b64decode(x).replace(b"\\r\\n", b"")\n    return base64.b64encode(base64.b64decode(raw, validate=True)).decode()',
    lines.map(b64),
  )
  t.ok(
    data.every((d, i) => b64(d) === python[i]),
    'Python decodes every one to the original',
  )
})

t.test('base64 the box accepts is base64 that Python decodes strictly, to the bytes the box decodes', async (t) => {
  const alphabet = fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.split(''))
  const text = fc.array(fc.oneof({ weight: 8, arbitrary: alphabet }, fc.constantFrom('=', '==', '\r\n', ' ', '-', '*', '\t')), { maxLength: 40 })
  const edges = ['A===', '====', 'AAAA====', 'AAAAA===', 'AA=\r\n=', 'AAA=A===', 'AB=C', 'A', 'AAAAA', '']
  const inputs = [...edges, ...fc.sample(text, { numRuns: 3000, seed: 2048 }).map((c) => c.join(''))].map((s) => Buffer.from(s, 'latin1'))
  const python = pythonEach<string, string | null>(
    'import base64, binascii\ndef judge(x):\n    raw = bytes(c for c in base64.b64decode(x) if c not in b" \\t\\r\\n")\n' +
      '    try:\n        return base64.b64encode(base64.b64decode(raw, validate=True)).decode()\n    except (binascii.Error, ValueError):\n        return None',
    inputs.map(b64),
  )
  const accepted = inputs.filter((b) => base64Problem(b) === undefined)
  const disagree = inputs.filter((b, i) => base64Problem(b) === undefined && python[i] !== b64(Buffer.from(b.toString('latin1'), 'base64')))
  t.ok(accepted.length > 100, `${accepted.length} of ${inputs.length} accepted`)
  t.same(disagree.map((b) => b.toString('latin1')).slice(0, 5), [], 'accepted, yet Python refuses it or reads other bytes')
})

t.test('7-bit safety and line endings', async (t) => {
  t.ok(isSevenBitSafe(Buffer.from('plain\r\ntext\r\n')))
  t.notOk(isSevenBitSafe(Buffer.from('caf\u00e9', 'latin1')), '8-bit byte')
  t.notOk(isSevenBitSafe(Buffer.from('a\0b')), 'NUL')
  t.notOk(isSevenBitSafe(Buffer.from(`${'x'.repeat(999)}\r\n`)), 'a line over 998')
  t.ok(isSevenBitSafe(Buffer.from(`${'x'.repeat(998)}\r\n`)))
  const crlf = Buffer.from('a\r\nb\r\n')
  t.equal(toCrlf(crlf), crlf, 'a conforming buffer is returned as is, not copied')
  t.equal(toCrlf(Buffer.from('a\nb\rc\r\n')).toString(), 'a\r\nb\r\nc\r\n')
})
