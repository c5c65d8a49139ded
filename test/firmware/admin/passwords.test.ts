import t from 'tap'
import { passwordProblem } from '../../../firmware/admin/passwords.ts'

t.test('S3: at least 12 characters with letters, digits and symbols, and not a common password dressed up', async (t) => {
  const refused: [string, RegExp][] = [
    ['Short1!', /at least 12/],
    ['onlyletters and spaces', /digit/],
    ['letters123456789', /symbol/],
    ['1234567890!@#$', /letter/],
    ['P@ssw0rd2026!', /commonly used/],
    ['Qwerty123456!', /commonly used/],
    ['!!Welcome2026', /commonly used/],
    ['StatementGateway1!', /commonly used/],
    ['aaaaaaaaaaaa1!', /commonly used/],
    ['wang.admin-2026!x', /account name/],
  ]
  for (const [pw, why] of refused) t.match(passwordProblem(pw, 'wang.admin'), why, pw)
  t.equal(passwordProblem('Tea-kettle 7 orchids', 'wang.admin'), undefined)
  t.equal(passwordProblem('雲端對帳單-2026-安全', 'lin'), undefined, 'letters of any script count')
  t.match(passwordProblem('x'.repeat(250) + '1!aaaaaa', 'lin'), /at most 256/)
})
