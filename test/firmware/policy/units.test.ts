import t from 'tap'
import { findTaiwanIds, isValidTaiwanId, maskId } from '../../../firmware/pii/taiwan-id.ts'
import { decodeWords } from '../../../firmware/mime/words.ts'

t.test('Taiwan IDs: checksum-valid ones are found, others and masked forms are not', async (t) => {
  t.ok(isValidTaiwanId('A123456789'), 'national ID')
  t.ok(isValidTaiwanId('A800000014'), 'new-style resident certificate (8/9)')
  t.notOk(isValidTaiwanId('A123456788'), 'wrong check digit')
  t.notOk(isValidTaiwanId('A323456789'), 'second digit must be 1/2/8/9')
  t.same(findTaiwanIds('ID: A123456789, masked A12****789, order B987654321X, phone 0912345678'), ['A123456789'])
  t.same(findTaiwanIds('統一編號A123456789號'), ['A123456789'], 'found inside Chinese text')
  t.equal(maskId('A123456789'), 'A12****789')
})

t.test('old-style resident certificate (second letter A–D) is checked too', async (t) => {
  // Find one valid old-style number by brute force over the check digit, then verify its neighbours fail.
  let valid = ''
  for (let d = 0; d <= 9 && !valid; d++) if (isValidTaiwanId(`AB1234567${d}`)) valid = `AB1234567${d}`
  t.ok(valid, `a valid old-style number exists (${valid})`)
  t.same(findTaiwanIds(`證號 ${valid} 結束`), [valid])
  const wrong = `${valid.slice(0, 9)}${(Number(valid[9]) + 1) % 10}`
  t.notOk(isValidTaiwanId(wrong))
})

t.test('RFC 2047: UTF-8 and Big5, B and Q, adjacent words joined', async (t) => {
  t.equal(decodeWords('=?UTF-8?B?5pyJ5YO56K2J5Yi45pyI5bCN5biz5Zau?='), '有價證券月對帳單')
  const big5 = Buffer.from('a6b3bbf9c3d2a8e9a4eb b9efb162b3e6'.replace(/ /g, ''), 'hex')
  t.equal(decodeWords(`=?big5?B?${big5.toString('base64')}?=`), '有價證券月對帳單')
  t.equal(decodeWords('=?UTF-8?Q?Hello_World?= =?UTF-8?Q?=21?='), 'Hello World!')
  t.equal(decodeWords('plain subject'), 'plain subject')
  // #34: 有 split mid-quantum across two words continues in the next word's base64, as libmime reads it.
  t.equal(decodeWords('=?UTF-8?B?5p?= =?UTF-8?B?yJ?='), '有')
  t.equal(decodeWords('=?UTF-8?B?5g==?= =?UTF-8?B?nIk=?='), '有', 'padded words end their bytes')
})
