import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import fc from 'fast-check'
import t from 'tap'
import { asLatin, CONFUSABLES_SOURCE, reading } from '../../../firmware/pii/as-read.ts'
import { findTaiwanIds, isValidTaiwanId, maskId, maskTaiwanIds } from '../../../firmware/pii/taiwan-id.ts'

/**
 * #32 (M12): national IDs found as a person reads them — other scripts' look-alike
 * letters (UTS #39 confusables, from the ICU Debian ships) and every script's digits.
 */
const TABLE = new URL('../../../firmware/pii/latin-confusables.json', import.meta.url)
const GENERATOR = new URL('../../../provisioning/unicode/latin-confusables.py', import.meta.url).pathname
const LETTERS = (JSON.parse(readFileSync(TABLE, 'utf8')) as { letters: Record<string, string> }).letters

/** Every decimal digit the runtime knows (general category Nd), and each run's zero. */
const ND: number[] = []
for (let cp = 0; cp <= 0x10ffff; cp++) if (cp < 0xd800 || cp > 0xdfff) if (/^\p{Nd}$/u.test(String.fromCodePoint(cp))) ND.push(cp)
/** The zero of every run of ten but ASCII's (a run is contiguous code points; back-to-back runs are split every ten). */
const ZEROS: number[] = []
for (let i = 0, runStart = -1; i < ND.length; i++) {
  if (i === 0 || ND[i]! !== ND[i - 1]! + 1) runStart = ND[i]!
  if ((ND[i]! - runStart) % 10 === 0 && ND[i]! > 0x7f) ZEROS.push(ND[i]!)
}

t.test('the confusables table is exactly what the installed ICU says (generated, never edited by hand)', async (t) => {
  const fresh = execFileSync('/usr/bin/python3', [GENERATOR, '-'], { encoding: 'utf8' })
  t.same(JSON.parse(fresh), JSON.parse(readFileSync(TABLE, 'utf8')), 'npm run unicode:confusables regenerates it when ICU is updated')
  t.match(CONFUSABLES_SOURCE, { standard: /UTS|#39/, unicode: /^\d+\.\d+$/, icu: /^\d+\.\d+/, debianPackage: /^libicu\d+ / })
  // Spot checks against what the standard's data says.
  t.equal(asLatin('\u0410\u0392\u0421'), 'ABC', 'Cyrillic А, Greek Β, Cyrillic С')
  t.equal(asLatin('丨一口'), '丨一口', 'Chinese characters are not Latin letters')
  t.notOk(
    Object.values(LETTERS)
      .join('')
      .match(/[\x00-\x7f]/),
    'ASCII is what the table folds to, not in it',
  )
})

t.test('every script’s decimal digits read as their value: agrees with Python’s unicodedata and with ICU', async (t) => {
  const py = JSON.parse(
    execFileSync(
      '/usr/bin/python3',
      [
        '-c',
        'import json,sys,unicodedata,icu\n' +
          'cps=json.load(sys.stdin)\n' +
          'out={}\n' +
          'for cp in cps:\n' +
          '  ch=chr(cp)\n' +
          '  out[cp]=[unicodedata.decimal(ch,-1), icu.Char.charDigitValue(cp)]\n' +
          'print(json.dumps(out))',
      ],
      { input: JSON.stringify(ND), encoding: 'utf8' },
    ),
  ) as Record<string, [number, number]>
  let compared = 0
  let newer = 0
  for (const cp of ND) {
    const [python, icu] = py[cp]!
    const ours = asLatin(String.fromCodePoint(cp))
    if (python < 0 && icu < 0) {
      newer++ // a script newer than both: the run rule alone
      continue
    }
    compared++
    if (python >= 0 && ours !== String(python)) t.fail(`U+${cp.toString(16)}: ${ours}, Python says ${python}`)
    if (icu >= 0 && ours !== String(icu)) t.fail(`U+${cp.toString(16)}: ${ours}, ICU says ${icu}`)
  }
  t.ok(compared > 600, `${compared} digits compared, ${newer} newer than Python's and ICU's data`)
  t.equal(ND.length % 10, 0, 'digits come in runs of ten')
})

/** A random checksum-valid ID: a letter, 1/2/8/9 or (old resident) A–D, 7 digits, the check digit found. */
const validId = fc
  .tuple(
    fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZ'),
    fc.constantFrom(...'1289ABCD'),
    fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 7, maxLength: 7 }),
  )
  .map(([l, second, digits]) => {
    const body = `${l}${second}${digits.join('')}`
    for (let c = 0; c < 10; c++) if (isValidTaiwanId(`${body}${c}`)) return `${body}${c}`
    throw new Error('no check digit')
  })

/** The ID written with look-alikes: each letter maybe another script's (upper or lower case), each digit maybe another script's. */
const disguised = validId.chain((id) =>
  fc
    .tuple(
      ...[...id].map((ch) =>
        /\d/.test(ch)
          ? fc.oneof(
              fc.constant(ch),
              fc.constantFrom(...ZEROS).map((z) => String.fromCodePoint(z + Number(ch))),
            )
          : fc.oneof(fc.constant(ch), fc.constantFrom(...[...(LETTERS[ch] ?? ''), ...(LETTERS[ch.toLowerCase()] ?? '')].filter((c) => c !== undefined))),
      ),
    )
    .map((chars) => ({ id, written: chars.join('') })),
)

const HAN = [...'本月對帳單您好客戶存款帳戶利息證券交易明細請查收謝謝銀行金額日期備註服務電話']
const KANA = [...'ご利用ありがとうございます明細書をお送りしますカードお支払い金額残高']
const CYRILLIC = ['номер', 'клиента', 'счёт', 'выписка', 'за', 'ноябрь', 'сумма', 'остаток', 'рублей', 'банк', 'Уважаемый', 'АВС', 'тел.', '№']
const word = fc.oneof(
  fc.array(fc.constantFrom(...HAN), { minLength: 1, maxLength: 12 }).map((a) => a.join('')),
  fc.array(fc.constantFrom(...KANA), { minLength: 1, maxLength: 12 }).map((a) => a.join('')),
  fc.constantFrom(...CYRILLIC),
  fc.integer({ min: 0, max: 99999999 }).map(String),
  fc.bigInt({ min: 0n, max: 10n ** 12n }).map((n) => `${n}`),
  fc.constantFrom('2026年11月30日', 'NT$12,345', '1 234,56 руб.', '第12345678号', 'В2', 'А4', '0912-345-678', '。', '，', '、', '.', ','),
)
/** Words joined with a space, an ideographic space or nothing; never a letter run straight into a number (that would be an ID-shaped token). */
const prose = fc
  .array(word, { minLength: 5, maxLength: 60 })
  .chain((ws) =>
    fc
      .constantFrom(' ', '', '　')
      .map((sep) =>
        ws.reduce((text, w) => (text && sep === '' && /[\p{L}\d]$/u.test(text) && /^\d/.test(w) ? `${text}、${w}` : `${text}${text ? sep : ''}${w}`), ''),
      ),
  )
const separator = fc.constantFrom(' ', '：', '（', '\n', '。', ': ')

t.test('property: a checksum-valid ID in any look-alike letters and digits is found, and masked', async (t) => {
  fc.assert(
    fc.property(disguised, prose, separator, prose, ({ id, written }, before, sep, after) => {
      const text = `${before}${sep}${written}${sep === '（' ? '）' : sep}${after}`
      const found = findTaiwanIds(text)
      if (!found.includes(id)) throw new Error(`${JSON.stringify(written)} (${id}) not found in ${JSON.stringify(text)}: ${found.join(', ')}`)
      const masked = maskTaiwanIds(text)
      if (findTaiwanIds(masked).length) throw new Error(`still found after masking: ${masked}`)
      if (!masked.includes(maskId(id))) throw new Error(`${maskId(id)} not in ${masked}`)
    }),
    { numRuns: 3000 },
  )
  t.pass('3,000 disguised IDs in random prose: each found, and gone after masking')
})

t.test('property: 10,000 paragraphs of Chinese, Japanese and Cyrillic prose without an ID: none flagged', async (t) => {
  const flagged: string[] = []
  fc.assert(
    fc.property(prose, (p) => {
      // The generator glues no letter to exactly nine digits, so nothing here is shaped like an ID but by folding.
      const ids = findTaiwanIds(p)
      if (ids.length) flagged.push(`${ids.join(', ')} in ${p}`)
    }),
    { numRuns: 10_000 },
  )
  t.same(flagged.slice(0, 5), [], `no false positives (${flagged.length} flagged)`)
})

t.test('the readings: what is shown keeps its script; what is searched is Latin; positions map back', async (t) => {
  const r = reading('客戶 \u{1d400}\u0410１２3 ok')
  t.equal(r.text, '客戶 A\u0410123 ok', 'NFKC: the mathematical A and the full-width digits')
  t.equal(r.latin, '客戶 AA123 ok')
  const astral = reading('x \u{1d7ce}\u{1d7cf} \u{11066}1 y') // mathematical digits (NFKC makes them ASCII), Brahmi digit zero
  t.equal(astral.text, 'x 01 \u{11066}1 y')
  t.equal(astral.latin, 'x 01 01 y')
  t.equal(astral.origin(6), 7, 'past the folded astral digit: one more unit in the text')
  t.equal(astral.text.slice(astral.origin(5), astral.origin(7)), '\u{11066}1')
  t.equal(maskTaiwanIds('Cyrillic \u0410123456789, Arabic A١٢٣٤٥٦٧٨٩, ok'), 'Cyrillic A12****789, Arabic A12****789, ok')
  t.equal(maskTaiwanIds('ſ'.normalize('NFC') + '123456789'), findTaiwanIds('ſ123456789').length ? 'F12****789' : 'ſ123456789'.normalize('NFKC'))
  t.same(findTaiwanIds('l123456789'.replace('l', 'ℓ')), findTaiwanIds('I123456789'), 'ℓ reads as I (NFKC would make it l)')
  t.same(findTaiwanIds('клиента123456789'), [], 'a Cyrillic а ending a word is that word’s letter')
  t.same(findTaiwanIds('номер A123456789'), ['A123456789'])
  t.same(findTaiwanIds('номерA123456789'), ['A123456789'], 'a Latin-lettered ID right after a Cyrillic word, as before')
  t.same(findTaiwanIds('客戶\u0410123456789您好'), ['A123456789'], 'a look-alike right after a Chinese word')
  t.same(findTaiwanIds('١A123456789'), [], 'glued to a digit of another script: part of a longer number')
  t.same(findTaiwanIds('A123456789٠'), [])
})

t.test('#35 property: a text of ASCII only reads as itself, and its IDs are those the full reading finds', async (t) => {
  // The full reading's steps, written out: NFKC, invisibles gone, other scripts as Latin (none in ASCII).
  fc.assert(
    fc.property(fc.string({ unit: fc.constantFrom(...'A1234567890 aZz\t\r\n.-'.split('')), maxLength: 60 }), (s) => {
      const r = reading(s)
      return r.text === s.normalize('NFKC') && r.latin === asLatin(s.normalize('NFKC')) && r.origin(3) === 3 && r.early === undefined
    }),
    { numRuns: 2000 },
  )
  // The eight-digit pass before the search: an ID is found wherever it sits, a long run of digits without one is not.
  t.same(findTaiwanIds(`${'X'.repeat(100_000)} A123456789 ${'9'.repeat(50)}`), ['A123456789'])
  t.same(findTaiwanIds(`${'X'.repeat(100_000)} 12345678 no letter in front`), [])
  t.same(findTaiwanIds('Ａ１２３４５６７８９'), ['A123456789'], 'full-width: not ASCII, read the full way')
})
