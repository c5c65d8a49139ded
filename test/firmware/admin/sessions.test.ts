import t from 'tap'
import { Sessions } from '../../../firmware/admin/sessions.ts'

t.test('S4: idle 15 minutes or 8 hours after login, the session is gone; ids are random and new each time', async (t) => {
  const clock = { value: 1_000_000, now: () => clock.value }
  const s = new Sessions({ clock, idleMinutes: 15, maxHours: 8 })
  const a = s.create({ user: 'wang', role: 'admin' })
  t.match(a.id, /^[A-Za-z0-9_-]{43}$/, '256 bits')
  t.not(s.create({ user: 'wang', role: 'admin' }).id, a.id)
  clock.value += 14 * 60_000
  t.ok(s.get(a.id), 'used within 15 minutes')
  clock.value += 14 * 60_000
  t.ok(s.get(a.id), 'the idle time starts again at each request')
  clock.value += 15 * 60_000 + 1
  t.equal(s.get(a.id), undefined, 'idle too long')
  t.equal(s.get(a.id), undefined, 'and gone for good')

  const b = s.create({ user: 'lin', role: 'operator' })
  for (let m = 0; m < 8 * 60; m += 10) {
    clock.value += 10 * 60_000
    if (m + 10 <= 8 * 60) t.ok(s.get(b.id) || m + 10 > 8 * 60, `in use at ${m + 10} min`)
  }
  clock.value += 1
  t.equal(s.get(b.id), undefined, 'eight hours after login, however busy')
  t.equal(s.get(undefined), undefined)
  t.equal(s.get('made-up'), undefined)
})

t.test('logout and the account disabled end sessions; a flood cannot grow the table without bound', async (t) => {
  const clock = { now: () => 0 }
  const s = new Sessions({ clock, idleMinutes: 15, maxHours: 8 })
  const a = s.create({ user: 'wang', role: 'admin' })
  const b = s.create({ user: 'lin', role: 'operator' })
  const c = s.create({ enrolling: 'lin' })
  s.end(a.id)
  t.equal(s.get(a.id), undefined)
  s.endUser('lin')
  t.equal(s.get(b.id), undefined)
  t.equal(s.get(c.id), undefined, 'an enrolment in progress too')
  const first = s.create({})
  for (let i = 0; i < 10_000; i++) s.create({})
  t.equal(s.get(first.id), undefined, 'the oldest went first')
  t.equal(s.active().length, 0, 'none of them logged in')
})
