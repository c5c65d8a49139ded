import fc from 'fast-check'
import t from 'tap'
import { field, MAX_LINE, MimeError, readHeader } from '../../../firmware/mime/header.ts'
import { pythonEach } from '../../helpers/python.ts'

t.test("header fields byte for byte, and unfolded as Python's email package reads them", async (t) => {
  const name = fc.constantFrom('From', 'To', 'Subject', 'X-Statement-ID', 'Received', 'DKIM-Signature', 'Comments')
  const word = fc.stringMatching(/^[!-9;-~]{1,12}$/)
  const value = fc
    .array(fc.tuple(word, fc.constantFrom(' ', '\t', '\r\n ', '\r\n\t', '  ')), { minLength: 1, maxLength: 6 })
    .map((ws) => ws.map(([w, sep], i) => (i ? sep : '') + w).join(''))
  const headers = fc.array(fc.tuple(name, value), { minLength: 1, maxLength: 8 })
  const messages = fc.sample(
    headers.map((hs) => Buffer.from(`${hs.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\nbody line\r\n`, 'latin1')),
    { numRuns: 500, seed: 5322 },
  )
  const python = pythonEach<string, [string, string][]>(
    'import base64, re\nfrom email import policy\nfrom email.parser import BytesHeaderParser\n' +
      'def judge(x):\n    m = BytesHeaderParser(policy=policy.compat32).parsebytes(base64.b64decode(x))\n' +
      '    return [[k, re.sub(r"\\r?\\n(?=[ \\t])", "", v).strip()] for k, v in m.items()]',
    messages.map((m) => m.toString('base64')),
  )
  const problems: string[] = []
  messages.forEach((m, i) => {
    const h = readHeader(m)
    const rebuilt = Buffer.concat([...h.headers.map((f) => f.raw), Buffer.from('\r\n'), h.body])
    if (!rebuilt.equals(m)) problems.push(`not byte for byte: ${JSON.stringify(m.toString('latin1'))}`)
    const ours = h.headers.map((f) => [f.name, f.value])
    if (JSON.stringify(ours) !== JSON.stringify(python[i])) problems.push(`${JSON.stringify(ours)} vs ${JSON.stringify(python[i])}`)
  })
  t.same(problems.slice(0, 3), [], `${messages.length} headers`)
  const first = readHeader(Buffer.from('Subject: a\r\n b\r\nsubject: c\r\n\r\n'))
  t.equal(field(first, 'subject'), 'a b', 'the first of a name, any case')
})

t.test('what readers take differently is refused, naming it', async (t) => {
  const refusal = (text: string) => {
    try {
      readHeader(Buffer.from(text, 'latin1'))
      return undefined
    } catch (err) {
      if (!(err instanceof MimeError)) throw err
      return `${err.code}: ${err.message}`
    }
  }
  t.match(refusal(' folded: first\r\n\r\n'), /EMESSAGE_AMBIGUOUS: .*continuation/)
  t.match(refusal('From: a@b.example\r\nno colon here\r\n\r\n'), /EMESSAGE_AMBIGUOUS: a header line that is not a field/)
  t.match(refusal('From : a@b.example\r\n\r\n'), /EMESSAGE_AMBIGUOUS: a header field name with whitespace/)
  t.match(refusal(`Subject: ${'x'.repeat(MAX_LINE)}\r\n\r\n`), /EMESSAGE_LINE_TOO_LONG/)
  t.equal(refusal(`Subject: ${'x'.repeat(MAX_LINE - 9)}\r\n\r\n`), undefined, 'exactly 998 octets is allowed')
})
