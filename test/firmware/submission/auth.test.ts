import t from 'tap'
import { FailureLimiter } from '../../../firmware/submission/auth.ts'

t.test('failure limiter: counts in a window, blocks, forgets after the block', async (t) => {
  let now = 0
  const l = new FailureLimiter({ max: 3, windowMs: 1000, blockMs: 5000 }, { now: () => now })
  t.notOk(l.fail('ip:a'))
  now = 900
  t.notOk(l.fail('ip:a'))
  now = 1500 // the first failure has left the window
  t.notOk(l.fail('ip:a'))
  t.notOk(l.blocked('ip:a'))
  t.ok(l.fail('ip:a'), 'third failure inside the window blocks')
  t.ok(l.blocked('ip:a'))
  t.notOk(l.blocked('ip:b'), 'other keys unaffected')
  now = 6499
  t.ok(l.blocked('ip:a'))
  now = 6500
  t.notOk(l.blocked('ip:a'))
  l.fail('ip:c')
  l.succeed('ip:c')
  t.notOk(l.fail('ip:c'), 'success resets the count')
})
