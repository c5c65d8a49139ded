import t from 'tap'
import { addressesIn, firstStatus, normalise, replyCodeIn, statusesIn } from '../../../firmware/return-path/scan.ts'

t.test('addresses in a notice: bracketed, quoted, at line ends, non-ASCII; not a dangling @', async (t) => {
  const text = 'to <wang@example.net>: failed\n"lin@example.org." and 王小明@例子.tw, see http://x/@y and @ alone; user@nodot'
  t.same(
    addressesIn(text).map((a) => a.value),
    ['wang@example.net', 'lin@example.org', '王小明@例子.tw'],
  )
  const at = addressesIn('xx a@b.example yy')[0]!
  t.equal(at.at, 3, 'where it starts')
})

t.test('RFC 3463 codes: class 2, 4 or 5 with 1–3 digit parts, not inside versions, dates or IP addresses', async (t) => {
  t.same(
    statusesIn('550 5.1.1 user; #4.4.1; 2.1.5 ok; 5.7.606 x; v1.5.2.3; 192.0.2.1; 10.4.4.1; 5.1.1234').map((s) => s.value),
    ['5.1.1', '4.4.1', '2.1.5', '5.7.606'],
  )
  t.equal(firstStatus('no code'), '')
})

t.test('the reply code: a 4xx/5xx token on its own, not part of a number or a date', async (t) => {
  t.equal(replyCodeIn('host said: 550-5.1.1 no such user'), '550')
  t.equal(replyCodeIn('Remote host said: 452 mailbox full'), '452')
  t.equal(replyCodeIn('in 4500 seconds, port 587 open'), '')
  t.equal(replyCodeIn('ERROR_CODE :421, host'), '421')
})

t.test('normalise: lower case, one space for every run of white space', async (t) => {
  t.equal(normalise('  Mailbox\r\n\tFULL  now '), 'mailbox full now')
})
