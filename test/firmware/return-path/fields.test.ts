import t from 'tap'
import { bareAddress, decodeUtf8Xtext, fieldBlocks, typedValue, valueType } from '../../../firmware/return-path/fields.ts'

t.test('RFC 3464 field blocks: blank-line separated, names in lower case, folded lines joined, first occurrence kept', async (t) => {
  const blocks = fieldBlocks(
    'Reporting-MTA: dns; mx\r\n\r\nFinal-Recipient: rfc822; a@b.example\r\nDiagnostic-Code: smtp; 550 no\r\n   such user\r\nStatus: 5.1.1\r\nStatus: 2.0.0\r\nnot a field\r\n',
  )
  t.equal(blocks.length, 2)
  t.equal(blocks[0]!.get('reporting-mta'), 'dns; mx')
  t.equal(blocks[1]!.get('diagnostic-code'), 'smtp; 550 no such user')
  t.equal(blocks[1]!.get('status'), '5.1.1')
})

t.test('a recipient field seen again starts the next recipient, for servers that leave out the blank line between them', async (t) => {
  const blocks = fieldBlocks(
    'Final-Recipient: rfc822; a@b.example\nOriginal-Recipient: rfc822;a@b.example\nAction: failed\nStatus: 5.2.2\n' +
      'Final-Recipient: rfc822; c@b.example\nOriginal-Recipient: rfc822;c@b.example\nAction: failed\nStatus: 5.1.1\n',
  )
  t.same(
    blocks.map((b) => [b.get('final-recipient'), b.get('original-recipient'), b.get('status')]),
    [
      ['rfc822; a@b.example', 'rfc822;a@b.example', '5.2.2'],
      ['rfc822; c@b.example', 'rfc822;c@b.example', '5.1.1'],
    ],
  )
  t.equal(fieldBlocks('Original-Recipient: rfc822;x@y\nFinal-Recipient: rfc822; x@y\nAction: failed\n').length, 1, 'one of each is one recipient')
})

t.test('typed values lose their type; RFC 6533 utf-8 addresses are decoded; a bad escape stays as written', async (t) => {
  t.equal(typedValue('rfc822; <a@b.example>'), '<a@b.example>')
  t.equal(typedValue('utf-8; \\x{738B}@\\x{4F8B}.tw'), '王@例.tw')
  t.equal(decodeUtf8Xtext('\\x{ZZ}a\\x{110000}'), '\\x{ZZ}a\\x{110000}')
  t.equal(typedValue(undefined), '')
  t.equal(valueType('X-Unix; 71'), 'x-unix')
  t.equal(valueType('smtp;550 no'), 'smtp')
  t.equal(valueType('550 no; such user'), '', 'words before a semicolon are not a type')
  t.equal(valueType(undefined), '')
  t.equal(bareAddress('"Wang" <wang@example.net> (home)'), 'wang@example.net')
  t.equal(bareAddress('wang@example.net (home)'), 'wang@example.net')
})
