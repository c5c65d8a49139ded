import { gzipSync } from 'node:zlib'
import t from 'tap'
import { tempDir } from '../../helpers/box.ts'
import { pagePdfs, zipFixture } from '../../helpers/pdf.ts'
import { LABEL, policyRig, statement, subject } from '../../helpers/policy.ts'

/**
 * The eight findings of #14, each tried over SMTP as a careless or hostile
 * submitter would: every one got 250 before; each reply is asserted as a real
 * SMTP client sees it.
 */
const pdfAttachment = (content: Buffer) => [{ name: 'statement.pdf', type: 'application/pdf', content }]

function inTrailer(pdf: Buffer, text: string): Buffer {
  const s = pdf.toString('latin1')
  const open = s.indexOf('<<', s.lastIndexOf('trailer')) + 2
  return Buffer.from(`${s.slice(0, open)} ${text} ${s.slice(open)}`, 'latin1')
}

t.test('finding 1: an unencrypted PDF with "/Encrypt" written somewhere is refused', async (t) => {
  const { send } = await policyRig(t, {})
  const pdfs = await pagePdfs(tempDir(t))
  const plain = pdfs['plain-page']!
  for (const [name, pdf] of Object.entries({
    comment: inTrailer(plain, '% /Encrypt 9 0 R\n'),
    null: inTrailer(plain, '/Encrypt null'),
    'nested dictionary': inTrailer(plain, '/X << /Encrypt 9 0 R >>'),
    string: inTrailer(plain, '/Title (/Encrypt 9 0 R)'),
    'missing object': inTrailer(plain, '/Encrypt 99 0 R'),
    'after %%EOF': Buffer.concat([plain, Buffer.from('% /Encrypt 9 0 R\n')]),
  })) {
    const r = await send(statement({ attachments: pdfAttachment(pdf) }))
    t.equal(`${r.code} ${r.text}`, '550 5.7.1 EPOLICY_PDF_UNENCRYPTED attachment "statement.pdf" is not encrypted', name)
  }
  const broken = await send(statement({ attachments: pdfAttachment(inTrailer(plain, '/Encrypt 1 0 R')) }))
  t.match(
    `${broken.code} ${broken.text}`,
    /^550 5\.7\.1 EPOLICY_PDF_UNREADABLE attachment "statement.pdf" cannot be read as a PDF/,
    'an /Encrypt the box cannot make sense of is refused, not accepted',
  )
  t.equal((await send(statement({ attachments: pdfAttachment(pdfs['aes-256-page']!) }))).code, 250, 'a really encrypted one passes')
  const renamed = await send(statement({ attachments: [{ name: 'statement.dat', type: 'application/octet-stream', content: plain }] }))
  t.equal(
    renamed.text,
    '5.7.1 EPOLICY_PDF_UNENCRYPTED attachment "statement.dat" (part 2) is declared application/octet-stream but is a PDF, and is not encrypted',
    'renamed and retyped: still judged as the PDF it is, and the mismatch named (#32)',
  )
})

t.test('finding 2: a ZIP whose end record claims no entries is refused', async (t) => {
  const { send } = await policyRig(t, {})
  const zip = await zipFixture(tempDir(t), false)
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]))
  zip.writeUInt16LE(0, eocd + 8)
  zip.writeUInt16LE(0, eocd + 10)
  const r = await send(statement({ attachments: [{ name: 'statement.zip', type: 'application/zip', content: zip }] }))
  t.equal(
    `${r.code} ${r.text}`,
    '550 5.7.1 EPOLICY_ZIP_MALFORMED attachment "statement.zip" is not a ZIP archive every reader reads alike (the end record says 0 entries, the directory holds 1)',
  )
})

t.test('finding 3: MIME that readers read differently is refused', async (t) => {
  const { send } = await policyRig(t, {})
  const head = 'From: statements@bank.example\r\nTo: customer@example.net\r\nSubject: x\r\nMIME-Version: 1.0\r\n'
  const pdfPart = 'Content-Type: application/pdf; name="s.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n'
  const dup = await send(`${head}Content-Type: multipart/mixed; boundary="A"; boundary="B"\r\n\r\n--A\r\n${pdfPart}--A--\r\n`)
  t.equal(`${dup.code} ${dup.text}`, '550 5.6.0 EMESSAGE_AMBIGUOUS the Content-Type of the message: parameter "boundary" is given more than once')
  const preamble = await send(
    `${head}Content-Type: multipart/mixed; boundary="A"\r\n\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4\r\n--A\r\nContent-Type: text/plain\r\n\r\nhi\r\n--A--\r\n`,
  )
  t.equal(`${preamble.code} ${preamble.text}`, '550 5.6.0 EMESSAGE_AMBIGUOUS the message has MIME-like content outside its parts (preamble or epilogue)')
  const epilogue = await send(
    `${head}Content-Type: multipart/mixed; boundary="A"\r\n\r\n--A\r\nContent-Type: text/plain\r\n\r\nhi\r\n--A--\r\n--A\r\n${pdfPart}`,
  )
  t.equal(`${epilogue.code} ${epilogue.text}`, '550 5.6.0 EMESSAGE_AMBIGUOUS the message has MIME-like content outside its parts (preamble or epilogue)')
})

t.test('finding 4: a national ID is found however it is written', async (t) => {
  const { send } = await policyRig(t, { attachmentTypes: [] })
  const id = 'A123456789'
  const html = (body: string) => statementWith('text/html; charset=utf-8', body)
  const statementWith = (type: string, body: string, cte = 'base64') =>
    `From: statements@bank.example\r\nTo: customer@example.net\r\nSubject: ${subject(`2026年11月${LABEL}`)}\r\nMIME-Version: 1.0\r\nContent-Type: ${type}\r\nContent-Transfer-Encoding: ${cte}\r\n\r\n${cte === 'base64' ? Buffer.from(body).toString('base64') : body}\r\n`
  const cases: Record<string, string> = {
    'split by HTML tags': html('<p>ID A123<b></b>456789</p>'),
    'as HTML character references': html('<p>&#65;123456789</p>'),
    'hex character references': html('<p>&#x41;&#x31;23456789</p>'),
    'with a zero-width space': statementWith('text/plain; charset=utf-8', 'ID A123\u200b456789'),
    'in full-width digits': statementWith('text/plain; charset=utf-8', 'ID Ａ１２３４５６７８９'),
    'in an HTML comment': html('<p>hello</p><!-- A123456789 -->'),
    'in an attribute': html('<img alt="A123456789" src="cid:x">'),
    'in UTF-7': statementWith('text/plain; charset=utf-7', 'ID +AEEAMQAyADMANAA1ADYANwA4ADk-', '7bit'),
    'in the To display name': statement().replace('To: customer@example.net', `To: "Wang ${id}" <customer@example.net>`),
    'in the From display name': statement({ from: `"Wang ${id}" <statements@bank.example>` }),
    'in an attachment file name': statement({ attachments: [{ name: `${id}.txt`, type: 'text/plain', content: Buffer.from('x') }] }),
    'in an RFC 2231 file name': statement({ attachments: [{ name: 'x.txt', type: 'text/plain', content: Buffer.from('x') }] })
      .replace('filename="x.txt"', `filename*=utf-8''${id}.txt`)
      .replace('; name="x.txt"', ''),
    'in an RFC 2047 subject': statement({ subject: subject(`${LABEL} ${id}`) }),
  }
  for (const [name, mail] of Object.entries(cases)) {
    const r = await send(mail)
    t.equal(`${r.code} ${r.text}`, '550 5.7.1 EPOLICY_UNMASKED_ID the message contains an unmasked national ID (A12****789)', name)
  }
  t.equal((await send(html('<p>身分證 A12****789</p>'))).code, 250, 'a masked ID passes')
  t.equal((await send(html('<td>X</td><td>A123456789</td>'.replace('A123456789', 'A123456780')))).code, 250, 'an invalid checksum passes')
})

t.test('finding 5: a multi-byte character split across two encoded words still reads as the label', async (t) => {
  const { send } = await policyRig(t, { statementClass: 'monthly', attachmentTypes: [] })
  const bytes = Buffer.from(`2026年11月${LABEL}`)
  // Split in the middle of a three-byte UTF-8 character, as some mailers do (RFC 2047 §5 says not to).
  const cut = bytes.indexOf(Buffer.from('證')) + 1
  const split = `=?UTF-8?B?${bytes.subarray(0, cut).toString('base64')}?= =?UTF-8?B?${bytes.subarray(cut).toString('base64')}?=`
  t.equal((await send(statement({ subject: split }))).code, 250, 'a correctly labelled monthly statement is accepted')
})

t.test('finding 8: header lines over 998 octets are refused', async (t) => {
  const { send } = await policyRig(t, { attachmentTypes: [] })
  const r = await send(statement().replace('To: customer@example.net', `To: customer@example.net\r\nX-Note: ${'x'.repeat(1000)}`))
  t.equal(`${r.code} ${r.text}`, '550 5.6.0 EMESSAGE_LINE_TOO_LONG a header line of 1008 octets (RFC 5322 allows 998)')
})

t.test('finding 6: an inspection past its budget is a temporary failure, recorded and counted', async (t) => {
  const { send, events, policy } = await policyRig(
    t,
    { attachmentTypes: [] },
    { policy: { inspectionBudgetMs: 100, profiles: [{ name: 'securities', accounts: ['firm-statements'], domains: ['bank.example'], attachmentTypes: [] }] } },
  )
  const html = `<p>${'statement line '.repeat(1 << 20)}</p>`.replace(/.{900}/g, '$&\r\n')
  const r = await send(
    `From: statements@bank.example\r\nTo: customer@example.net\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n${html}\r\n`,
  )
  t.equal(`${r.code} ${r.text}`, '451 4.3.0 ETEMPORARY the message could not be checked in time; try again later', 'never accepted unchecked')
  t.match(
    events.find((e) => e.type === 'policy.inspection_budget'),
    { type: 'policy.inspection_budget', budgetMs: 100, bytes: Number },
  )
  t.match(policy.counters.get('inspection-budget'), { refused: 1 })
  t.equal((await send(statement())).code, 250, 'the worker that was stopped is replaced: the next mail is judged')
})

/** A statement whose parts are given whole: [Content-Type and other fields, body bytes (sent base64)]. */
function mixed(parts: [string, Buffer][], subjectText = subject(`2026年11月${LABEL}`)): string {
  const b = 'sniff-boundary'
  return (
    `From: statements@bank.example\r\nTo: customer@example.net\r\nSubject: ${subjectText}\r\nMIME-Version: 1.0\r\n` +
    `Content-Type: multipart/mixed; boundary="${b}"\r\n\r\n` +
    parts
      .map(([fields, body]) => `--${b}\r\n${fields}\r\nContent-Transfer-Encoding: base64\r\n\r\n${body.toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n`)
      .join('') +
    `--${b}--\r\n`
  )
}

t.test('#32 finding 1: every leaf is judged by its bytes, whatever it is declared as; the mismatch is named', async (t) => {
  const { send } = await policyRig(t, {})
  const pdfs = await pagePdfs(tempDir(t))
  const good: [string, Buffer] = [
    'Content-Type: application/pdf; name="statement.pdf"\r\nContent-Disposition: attachment; filename="statement.pdf"',
    pdfs['aes-256-page']!,
  ]
  const text: [string, Buffer] = ['Content-Type: text/plain; charset=utf-8', Buffer.from('您好，本月對帳單如附件。')]
  // The finding as reported: an unencrypted PDF as an unnamed inline text/plain part, next to a good encrypted attachment.
  const asText = await send(mixed([text, ['Content-Type: text/plain', pdfs['plain-page']!], good]))
  t.equal(`${asText.code} ${asText.text}`, '550 5.7.1 EPOLICY_PDF_UNENCRYPTED part 2 is declared text/plain but is a PDF, and is not encrypted')
  t.equal((await send(mixed([text, ['Content-Type: text/plain', pdfs['aes-256-page']!], good]))).code, 250, 'the same part encrypted is accepted')
  const asHtml = await send(mixed([['Content-Type: text/html; charset=utf-8', pdfs['plain-page']!], good]))
  t.equal(asHtml.text, '5.7.1 EPOLICY_PDF_UNENCRYPTED part 1 is declared text/html but is a PDF, and is not encrypted')
  const asImage = await send(mixed([text, ['Content-Type: image/png; name="logo.png"\r\nContent-Disposition: inline', pdfs['plain-page']!], good]))
  t.equal(asImage.text, '5.7.1 EPOLICY_PDF_UNENCRYPTED attachment "logo.png" (part 2) is declared image/png but is a PDF, and is not encrypted')
  // In an attached message: its parts are leaves like any other.
  const inner = `From: a@bank.example\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n${pdfs['plain-page']!.toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n`
  const b = 'outer'
  const nested = await send(
    `From: statements@bank.example\r\nTo: customer@example.net\r\nSubject: ${subject(`2026年11月${LABEL}`)}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="${b}"\r\n\r\n` +
      `--${b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n--${b}\r\nContent-Type: message/rfc822\r\n\r\n${inner}--${b}\r\n` +
      `Content-Type: application/pdf; name="statement.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n${pdfs['aes-256-page']!.toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n--${b}--\r\n`,
  )
  t.equal(nested.text, '5.7.1 EPOLICY_PDF_UNENCRYPTED part 2.1 is declared text/plain but is a PDF, and is not encrypted')
  // A ZIP as text: the ZIP rule.
  const zip = await zipFixture(tempDir(t), false)
  const zipAsText = await send(mixed([text, ['Content-Type: text/plain', zip], good]))
  t.equal(zipAsText.text, '5.7.1 EPOLICY_ZIP_UNENCRYPTED part 2 is declared text/plain but is a ZIP archive, and has unencrypted entries')
  // An archive the profile does not allow (it allows PDFs only), hidden as text.
  const gz = gzipSync(Buffer.from('A123456789'))
  const gzAsText = await send(mixed([text, ['Content-Type: text/plain', gz], good]))
  t.equal(gzAsText.text, '5.7.1 EPOLICY_ATTACHMENT_TYPE part 2 is declared text/plain but is gzip data (application/gzip), which is not allowed')
  // Named for what it is: no mismatch to report.
  t.equal(
    (await send(mixed([text, ['Content-Type: application/pdf; name="s.pdf"\r\nContent-Disposition: attachment; filename="s.pdf"', pdfs['plain-page']!]]))).text,
    '5.7.1 EPOLICY_PDF_UNENCRYPTED attachment "s.pdf" is not encrypted',
  )
})

t.test('#32 finding 2: a national ID in other scripts\u2019 look-alike letters or digits is found; masked, it passes', async (t) => {
  const { send } = await policyRig(t, { attachmentTypes: [] })
  const body = (s: string) => mixed([['Content-Type: text/plain; charset=utf-8', Buffer.from(s)]])
  const refused = '550 5.7.1 EPOLICY_UNMASKED_ID the message contains an unmasked national ID (A12****789)'
  const cases: Record<string, string> = {
    'a Cyrillic А (U+0410) in front': '身分證字號 \u0410123456789',
    'Arabic-Indic digits': '身分證字號 A١٢٣٤٥٦٧٨٩',
    'Devanagari digits and a Greek Α': '\u0391१२३४५६७८९',
    'Cyrillic А glued to Chinese': '客戶\u0410123456789您好',
    'Cyrillic prose around it': 'номер A123456789 клиента',
  }
  for (const [name, text] of Object.entries(cases)) {
    const r = await send(body(text))
    t.equal(`${r.code} ${r.text}`, refused, name)
  }
  t.equal(`${(await send(mixed([], subject(`${LABEL} \u0410123456789`)))).code}`, '550', 'in the subject')
  const named = await send(
    mixed([
      ['Content-Type: text/plain; charset=utf-8', Buffer.from('hi')],
      ["Content-Type: text/plain\r\nContent-Disposition: attachment; filename*=utf-8''A%D9%A1%D9%A2%D9%A3456789.txt", Buffer.from('x')],
    ]),
  )
  t.equal(`${named.code} ${named.text}`, refused, 'in a file name')
  for (const masked of ['身分證字號 \u041012****789', '身分證字號 A١٢****٧٨٩', 'номер клиента 12345', 'Ответ: АВС 2026 年 11 月', 'قيمة ١٢٣٤٥٦٧٨٩ دينار'])
    t.equal((await send(body(masked))).code, 250, `no ID: ${masked}`)
})
