import t from 'tap'
import fc from 'fast-check'
import { MimeError } from '../../../firmware/mime/header.ts'
import { parseMessage, walk } from '../../../firmware/mime/tree.ts'
import { boxLeaves, mimeMessage, pythonLeaves, type Leaf } from '../../helpers/mime.ts'

const m = (s: string) => Buffer.from(s.replace(/\n/g, '\r\n'))
const refusal = (raw: Buffer): string | undefined => {
  try {
    parseMessage(raw)
    return undefined
  } catch (err) {
    if (err instanceof MimeError) return `${err.code} ${err.message}`
    throw err
  }
}

const PDF_PART = 'Content-Type: application/pdf; name="s.pdf"\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n'

t.test('#14 finding 3: structures readers take differently are refused, naming what', async (t) => {
  const cases: [string, string, RegExp][] = [
    [
      'two boundary parameters',
      'Content-Type: multipart/mixed; boundary="A"; boundary="B"\n\n--A\n' + PDF_PART + '--A--\n',
      /EMESSAGE_AMBIGUOUS .*"boundary" is given more than once/,
    ],
    [
      'a PDF hidden in the preamble',
      'Content-Type: multipart/mixed; boundary="A"\n\n' + 'Content-Type: application/pdf\n\n%PDF-1.4 unencrypted\n--A\nContent-Type: text/plain\n\nhi\n--A--\n',
      /EMESSAGE_AMBIGUOUS .*outside its parts/,
    ],
    [
      'a PDF hidden in the epilogue',
      'Content-Type: multipart/mixed; boundary="A"\n\n--A\nContent-Type: text/plain\n\nhi\n--A--\n--A\n' + PDF_PART,
      /EMESSAGE_AMBIGUOUS .*outside its parts/,
    ],
    ['Content-Type twice', 'Content-Type: text/plain\nContent-Type: application/pdf\n\nx\n', /EMESSAGE_AMBIGUOUS the message has 2 content-type fields/],
    [
      'Content-Transfer-Encoding twice',
      'Content-Transfer-Encoding: base64\nContent-Transfer-Encoding: 7bit\n\nx\n',
      /EMESSAGE_AMBIGUOUS .*2 content-transfer-encoding fields/,
    ],
    ['charset twice', 'Content-Type: text/plain; charset=utf-8; charset=big5\n\nx\n', /"charset" is given more than once/],
    [
      'filename and filename*',
      'Content-Type: application/pdf\nContent-Disposition: attachment; filename="a.pdf"; filename*=utf-8\'\'b.pdf\n\nx\n',
      /"filename" is given more than once/,
    ],
    [
      'name and filename differ',
      'Content-Type: application/pdf; name="a.pdf"\nContent-Disposition: attachment; filename="b.pdf"\n\nx\n',
      /named both "b.pdf" and "a.pdf"/,
    ],
    ['a header line that is no field', 'Subject: x\nthis is no field\nContent-Type: application/pdf\n\nx\n', /a header line that is not a field/],
    ['whitespace in a field name', 'Content-Type : application/pdf\n\nx\n', /field name with whitespace/],
    [
      'a nested boundary that has the outer one as prefix',
      'Content-Type: multipart/mixed; boundary="A"\n\n--A\nContent-Type: multipart/alternative; boundary="AB"\n\n--AB\nContent-Type: text/plain\n\nx\n--AB--\n--A--\n',
      /starts with the boundary "A" but is no delimiter/,
    ],
    [
      'base64 with characters outside the alphabet',
      'Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0x!!LjQK\n',
      /outside the base64 alphabet/,
    ],
    ['base64 data after padding', 'Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nQQ==\nJVBERi0xLjQK\n', /base64 data after padding/],
    ['an unknown transfer encoding', 'Content-Type: application/pdf\nContent-Transfer-Encoding: x-uuencode\n\nx\n', /transfer encoding "x-uuencode"/],
    ['uuencoded data in a text part', 'Content-Type: text/plain\n\nhello\nbegin 644 statement.pdf\nM)5!$\nend\n', /uuencoded data/],
    ['message/partial', 'Content-Type: message/partial; id="x"; number=1\n\nx\n', /message\/partial/],
    ['two From fields', 'From: b@evil.example\n\nx\n', /2 from fields/],
    ['two Subject fields', 'Subject: 有價證券月對帳單\nSubject: other\n\nx\n', /2 subject fields/],
  ]
  for (const [name, text, want] of cases) t.match(refusal(m(`From: s@bank.example\n${text}`)), want, name)
  t.match(refusal(m(' folded\nFrom: s@bank.example\n\nx\n')), /starts with a continuation line/, 'a continuation line first')
  t.match(
    refusal(m(`From: s@bank.example\nSubject: ${'x'.repeat(990)}\n\nx\n`)),
    /EMESSAGE_LINE_TOO_LONG a header line of 999 octets/,
    'finding 8: a header line over 998 octets',
  )
  t.equal(refusal(m(`From: s@bank.example\nSubject: ${'x'.repeat(989)}\n\nx\n`)), undefined, 'a header line of exactly 998 octets is fine')
  t.match(
    refusal(m('From: s@bank.example\nContent-Type: multipart/mixed; boundary="never"\n\n--never\nContent-Type: text/plain\n\nx\n')),
    /EMESSAGE_MALFORMED multipart body with boundary "never" is not terminated/,
  )
})

t.test('a clean statement is read as every reader reads it', async (t) => {
  const raw = m(
    'From: "Bank" <s@bank.example>\nSubject: =?UTF-8?B?5pyI5bCN5biz5Zau?=\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b1"\n\nThis is a multi-part message in MIME format.\n--b1\n' +
      'Content-Type: multipart/alternative; boundary="b2"\n\n--b2\nContent-Type: text/plain; charset=utf-8\n\nhi\n--b2\nContent-Type: text/html; charset=utf-8\n\n<p>hi</p>\n--b2--\n' +
      "--b1\nContent-Type: application/pdf; name*=utf-8''%E5%B0%8D%E5%B8%B3%E5%96%AE.pdf\nContent-Disposition: attachment; filename*0*=utf-8''%E5%B0%8D%E5%B8%B3; filename*1*=%E5%96%AE.pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--b1--\n",
  )
  const top = parseMessage(raw)
  t.same(
    [...walk(top)].map((n) => [n.path, n.mime, n.filename]),
    [
      ['', 'multipart/mixed', ''],
      ['1', 'multipart/alternative', ''],
      ['1.1', 'text/plain', ''],
      ['1.2', 'text/html', ''],
      ['2', 'application/pdf', '對帳單.pdf'],
    ],
  )
  const [py] = await pythonLeaves([raw])
  t.same(py!.compat32, boxLeaves(raw), 'Python (compat32) reads the same parts, names and bytes')
  t.same(py!.default, boxLeaves(raw), 'Python (default policy) too')
})

t.test("differential with Python's email package: wherever the box accepts, both policies see the same parts", async (t) => {
  const messages = fc.sample(mimeMessage, { numRuns: 600, seed: 1414 })
  const py = await pythonLeaves(messages)
  let accepted = 0
  let refused = 0
  const disagreements: string[] = []
  // Which parts exist (type and decoded bytes) must agree under both policies; file names are
  // compared under the default policy, which reads UTF-8 header text (RFC 6532) as mail readers
  // do — compat32 predates it and shows raw UTF-8 names as Latin-1.
  const same = (a: Leaf[], b: unknown, names: boolean) =>
    JSON.stringify(a.map((l) => (names ? l : { ...l, filename: '' }))) ===
    JSON.stringify(Array.isArray(b) ? b.map((l: Leaf) => (names ? l : { ...l, filename: '' })) : b)
  messages.forEach((raw, i) => {
    const box = boxLeaves(raw)
    if (!Array.isArray(box)) return void refused++
    accepted++
    for (const policy of ['compat32', 'default'] as const) {
      if (!same(box, py[i]![policy], policy === 'default'))
        disagreements.push(`${policy}: box ${JSON.stringify(box)} python ${JSON.stringify(py[i]![policy])}\n${raw.toString('utf8').slice(0, 600)}`)
    }
  })
  t.comment(
    `MIME differential: ${messages.length} messages, ${accepted} accepted and read alike by both Python policies, ${refused} refused; disagreements where the box accepted: ${disagreements.length}`,
  )
  t.ok(accepted > 100 && refused > 100, 'the sample has both kinds')
  t.same(disagreements, [], 'no message the box accepts is read differently by Python')
})
