import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { AUTH_QUEUE_MAX, Authenticator, FailureLimiter } from '../../../firmware/submission/auth.ts'
import { ACCOUNT, testConfig } from '../../helpers/box.ts'

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

/** #29 finding 5: an AUTH flood must not starve the firm's host. */

async function authenticator(t: { teardown(fn: () => unknown): void }, submission: Record<string, unknown> = {}) {
  const config = await testConfig(t, { submission })
  return new Authenticator(config, { now: () => Date.now() })
}

t.test('a bounded queue: beyond AUTH_QUEUE_MAX waiting checks, the newcomers are told 454 EAUTH_BUSY at once', async (t) => {
  const auth = await authenticator(t)
  const n = AUTH_QUEUE_MAX + 2 + 6 // two running, the queue full, six more
  const started = Date.now()
  const outcomes = await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const o = await auth.check(ACCOUNT.name, 'wrong password', `192.0.2.${i + 1}`)
      return { reason: o.ok ? 'ok' : o.reason, ms: Date.now() - started, code: o.ok ? '' : o.error.code }
    }),
  )
  const busy = outcomes.filter((o) => o.reason === 'busy')
  t.equal(busy.length, 6, 'six refused')
  t.ok(
    busy.every((o) => o.code === 'EAUTH_BUSY' && o.ms < 100),
    `at once (${busy.map((o) => o.ms).join(', ')} ms), not after waiting`,
  )
  t.equal(outcomes.filter((o) => o.reason === 'bad-password').length, n - 6, 'the others were checked')
})

t.test('addresses take turns: a host behind 20 flooding addresses is served after one turn each, not after the flood', async (t) => {
  const auth = await authenticator(t)
  let checked = 0
  let stop = false
  // Each flooding address tries again as soon as it is answered, four times (under the block of five),
  // names it guesses (an unknown name costs the same check as a known one).
  const flood = Array.from({ length: 20 }, async (_, i) => {
    for (let k = 0; k < 4 && !stop; k++) {
      await auth.check(`guess-${k}`, 'wrong password', `192.0.2.${i + 1}`)
      checked++
    }
  })
  await sleep(150) // the flood has filled the queue
  const atStart = checked
  const good = await auth.check(ACCOUNT.name, ACCOUNT.password, '198.51.100.7')
  const waited = checked - atStart
  stop = true
  await Promise.all(flood)
  t.ok(good.ok, 'the good login succeeds')
  t.ok(atStart < 20, `the flood was queued when it came (${atStart} checks done)`)
  t.ok(waited <= 22, `served after ${waited} more of the flood's checks (one turn of each address, plus the two running), not after all ${80 - atStart}`)
})

t.test('a known client of the account goes first and is not slowed by failures for the account', async (t) => {
  const auth = await authenticator(t, { authFailures: { max: 3, windowSeconds: 900, blockSeconds: 900 } })
  t.ok((await auth.check(ACCOUNT.name, ACCOUNT.password, '198.51.100.7')).ok, 'the firm host logs in (now known)')
  // Three failures for the account, from three addresses at once: the account is now slowed.
  const spray = (from: number) => Promise.all([0, 1, 2].map((i) => auth.check(ACCOUNT.name, 'wrong password', `192.0.2.${from + i}`)))
  await spray(1)
  let t0 = Date.now()
  t.ok((await auth.check(ACCOUNT.name, ACCOUNT.password, '198.51.100.7')).ok)
  const knownMs = Date.now() - t0
  await spray(11)
  t0 = Date.now()
  t.ok((await auth.check(ACCOUNT.name, ACCOUNT.password, '198.51.100.8')).ok, 'a new host with the right password gets in too')
  const newMs = Date.now() - t0
  t.ok(newMs >= 250, `but the account under attack answers a new host slowly (${newMs} ms)`)
  t.ok(knownMs < newMs, `and the known host without the slow-down (${knownMs} ms)`)
})
