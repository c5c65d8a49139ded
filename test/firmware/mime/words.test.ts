import t from 'tap'
import { decodeRfc2231, decodeUtf7, decodeWords } from '../../../firmware/mime/words.ts'
import { parseParams } from '../../../firmware/mime/params.ts'
import { htmlText } from '../../../firmware/mime/html.ts'

t.test('#14 finding 5: adjacent encoded words in one charset are joined as bytes before decoding', async (t) => {
  const label = Buffer.from('有價證券月對帳單')
  for (const cut of [1, 2, 4, 5, 8]) {
    const b = (x: Buffer) => `=?UTF-8?B?${x.toString('base64')}?=`
    t.equal(decodeWords(`${b(label.subarray(0, cut))} ${b(label.subarray(cut))}`), '有價證券月對帳單', `split after byte ${cut}`)
  }
  const q = (x: Buffer) => `=?utf-8?q?${[...x].map((c) => `=${c.toString(16).toUpperCase()}`).join('')}?=`
  t.equal(decodeWords(`${q(label.subarray(0, 4))}\r\n ${q(label.subarray(4))}`), '有價證券月對帳單', 'Q words across a folded line')
  t.equal(decodeWords('=?UTF-8?B?5pyI?= and =?UTF-8?B?5pyI?='), '月 and 月', 'text between words stays')
  t.equal(
    decodeWords('=?ISO-8859-1?Q?caf=E9?= =?UTF-8?B?5pyI?='),
    'café月',
    'different charsets are decoded apart, the space between them still dropped (RFC 2047 §6.2)',
  )
  t.equal(decodeWords('=?UTF-8*zh-TW?B?5pyI?='), '月', 'RFC 2231 language in the charset')
  t.equal(decodeWords('=?UTF-8?X?abc?= plain'), '=?UTF-8?X?abc?= plain', 'not an encoded word: left alone')
  t.equal(decodeWords('=?UTF-8?Q?a b?='), '=?UTF-8?Q?a b?=', 'no whitespace inside a word')
})

t.test('RFC 2231 parameters: continuations, charsets, and what makes them ambiguous', async (t) => {
  t.same(parseParams("attachment; filename*0*=utf-8''%E5%B0%8D; filename*1*=%E5%B8%B3.pdf").params, { filename: '對帳.pdf' })
  t.same(parseParams('attachment; filename*0="a"; filename*1="b.pdf"').params, { filename: 'ab.pdf' })
  t.equal(decodeRfc2231("big5''%B9%EF"), '對')
  t.match(parseParams('attachment; filename*0="a"; filename*2="c"').ambiguity, /gap/)
  t.match(parseParams('attachment; filename*0="a"; filename*0="b"').ambiguity, /section 0 .* more than once/)
  t.match(parseParams('text/plain; charset="utf-8').ambiguity, /unterminated/)
  t.same(parseParams('text/plain; charset="a\\"b"; format=flowed').params, { charset: 'a"b', format: 'flowed' })
})

t.test('UTF-7 and HTML character references', async (t) => {
  t.equal(decodeUtf7('ID +AEEAMQAyADMANAA1ADYANwA4ADk-'), 'ID A123456789')
  t.equal(decodeUtf7('1 +- 1 = 2'), '1 + 1 = 2')
  t.equal(decodeUtf7('+ZwhnCQ-'), '月有')
  t.equal(htmlText('&#65;&#x31;&amp;&lt;&nbsp&unknown;').joined, 'A1&<\u00a0&unknown;')
  const h = htmlText('<p>A123<b></b>456789</p><!-- hidden --><script>var x = "A"</script><td>X</td><td>Y</td>')
  t.equal(h.joined, 'A123456789XY')
  t.equal(h.spaced.replace(/\s+/g, ' ').trim(), 'A123 456789 X Y')
  t.match(h.source, /<!-- hidden -->/, 'the source reading keeps comments')
})
