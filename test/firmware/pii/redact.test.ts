import fc from 'fast-check'
import t from 'tap'
import { maskPersonalData, OUTSIDE_TEXT_LIMIT, redactText } from '../../../firmware/pii/redact.ts'
import { maskTaiwanIds } from '../../../firmware/pii/taiwan-id.ts'

/** #30 (S6, M10): what the box keeps of text from outside: nothing that says whom it is about. */

t.test('a receiver’s words: addresses, national IDs and long numbers masked, at most 200 characters', async (t) => {
  t.equal(
    redactText('552 5.2.2 <flip@example.net>: mailbox full (Wang Da-Ming, A123456789), call 0912345678'),
    '552 5.2.2 <f****p@example.net>: mailbox full (Wang Da-Ming, A12****789), call 09******78',
  )
  t.equal(
    redactText('A１２３４５６７８９ and A123\u200b456789'),
    'A12****789 and A12****789',
    'full-width digits and invisible characters read as a person reads them',
  )
  t.equal(redactText('B1234567 is neither an ID nor a long number'), 'B1234567 is neither an ID nor a long number')
  t.equal(redactText('A123456788 (a wrong check digit)'), 'A12*****88 (a wrong check digit)', 'not an ID, but still a long number')
  t.equal(redactText('550 5.1.1 line\r\nbreak\u0000'), '550 5.1.1 line break ', 'control characters become a space')
  const long = redactText('x'.repeat(500))
  t.equal([...long].length, OUTSIDE_TEXT_LIMIT)
  t.ok(long.endsWith('…'))
  t.equal(redactText('4.4.1 timed out after 300 seconds (queue 20261206)'), '4.4.1 timed out after 300 seconds (queue 20****06)')
  fc.assert(fc.property(fc.string({ maxLength: 2000 }), (s) => [...redactText(s)].length <= OUTSIDE_TEXT_LIMIT))
})

t.test('a reason the box wrote: addresses and IDs masked, nothing else changed', async (t) => {
  t.equal(
    maskPersonalData('unlocked for ticket 2026120612345, asked by wang@bank.example (A123456789)'),
    'unlocked for ticket 2026120612345, asked by w****g@bank.example (A12****789)',
  )
  t.equal(maskTaiwanIds('plain text'), 'plain text')
})
