import { hostname } from 'node:os'
import t from 'tap'
import { accountTool, adminBox, approvedAccount, oneTimeCodeIn, secondAdmin, setUpFirstAdmin, welcome, withRecovery } from '../../helpers/admin.ts'

/**
 * #31 on the running box's admin page: four eyes means two people, and no
 * outsider can lock the administrators out.
 */
const ALICE = { name: 'alice', password: 'Tea-kettle 7 orchids' }
const CAROL = { name: 'carol', password: 'Winter-melon 5 soup' }
const BOB = { name: 'bob', password: 'Tiger-balm 8 jars!' }

t.test('alice cannot approve her own changes as an account she had made: the bob sequence, stopped', async (t) => {
  const box = await adminBox(t, { admin: { loginAttemptsPerMinute: 500, loginDelayMs: 20 } }, { INVOCATION_ID: 'test' })
  const { secret: aliceSecret, recovery } = await setUpFirstAdmin(box, ALICE.name, ALICE.password)
  const alice = await withRecovery(box, ALICE.name, ALICE.password, recovery[0]!)

  // Users → name bob, role admin: a proposal now, with no password field at all.
  const users = await alice.get('/users')
  t.notMatch(users.body, /name="password"/, 'no password field for a new account')
  const proposed = await alice.post('/users', { name: BOB.name, role: 'admin', reason: 'a second administrator' })
  t.match(proposed.body, /Proposed: it waits for a second administrator/, '"proposal waits for a second administrator"')
  const id = /\/users\/proposals\/([0-9a-f]{12})\/withdraw/.exec(proposed.body)![1]!
  t.notMatch(proposed.body, new RegExp(`/users/proposals/${id}/approve`), 'its author is not offered approval')
  const own = await alice.post(`/users/proposals/${id}/approve`, { code: await box.code(aliceSecret) })
  t.equal(own.status, 409, "alice's own approval refused")
  t.match(own.body, /not by its author/)
  t.notMatch((await alice.get('/users')).body, /<td>bob<\/td>/, 'no account bob')

  // Carol, the real second person, enrolled at the console; she approves bob.
  const { client: carol, secret: carolSecret } = await secondAdmin(box, alice, CAROL)
  await carol.get('/users')
  const approved = await carol.post(`/users/proposals/${id}/approve`, { code: await box.code(carolSecret) })
  t.equal(approved.status, 200, /<p class="notice[^>]*>([^<]*)/.exec(approved.body)?.[1] ?? '')
  const code = oneTimeCodeIn(approved.body)
  t.match(approved.body, /shown only now, works once and for 24 hours/, 'the approver gets a one-time enrolment code')
  t.notMatch(approved.body, /otpauth|class="qr"/, 'never a TOTP secret')
  const { recovery: bobRecovery } = await welcome(box, BOB.name, code, BOB.password)
  const bob = await withRecovery(box, BOB.name, BOB.password, bobRecovery[0]!)

  // Alice proposes a configuration change; bob, made on her proposal, may not approve it.
  await alice.get('/config')
  const change = await alice.post('/config/propose', { 'c:delivery.bandwidthBitsPerSecond': '5000000', reason: 'half the link (ticket 77)' })
  const path = change.headers.location as string
  const hash = /name="hash" value="([0-9a-f]{64})"/.exec((await bob.get(path)).body)![1]!
  const minted = await bob.post(`${path}/approve`, { hash, code: bobRecovery[1]! })
  t.equal(minted.status, 409, "bob's approval of alice's change refused")
  t.match(minted.body, /bob&#39;s account was made on .*proposed by alice, approved by carol.*does not approve alice&#39;s changes/)

  // The same for a factory reset alice asks for.
  await alice.get('/system/reset')
  t.equal(
    (await alice.post('/system/reset/request', { reason: 'end of lease', confirm: `ERASE ${hostname()}`, code: await box.code(aliceSecret) })).status,
    200,
  )
  await bob.get('/system/reset')
  const reset = await bob.post('/system/reset/approve', { confirm: `ERASE ${hostname()}`, code: bobRecovery[2]! })
  t.equal(reset.status, 409, "bob's approval of alice's factory reset refused")
  t.match(reset.body, /does not approve alice/)

  // The trail: who proposed and who approved, and the refusals (written within the trail's flush interval).
  let trail = ''
  for (let i = 0; i < 20 && !/approval-refused/.test(trail); i++) {
    if (i) await new Promise((r) => setTimeout(r, 200))
    trail = (await carol.get('/audit?type=admin.action')).body
  }
  t.match(trail, /user\.proposal\.proposed/)
  t.match(trail, /proposed by alice, approved by carol/)
  t.match(trail, /box\.factory-reset\.approval-refused/, 'the refused factory-reset approval is recorded')
})

t.test('no outsider locks the administrators out: delays, the lock, an alarm, the review, the console unlock', async (t) => {
  // The first failure's answer (a password check, no delay) must come in under `base`: on a busy
  // 2-core machine it once took 212 ms, and 468 ms on a slower one (CI, 2026-12-07), so `base` leaves
  // room (each later wait is a lower bound, which load only lengthens).
  const base = 800
  const box = await adminBox(t, { admin: { loginAttemptsPerMinute: 500, loginDelayMs: base } })
  const { recovery } = await setUpFirstAdmin(box, ALICE.name, ALICE.password)
  const alice = await withRecovery(box, ALICE.name, ALICE.password, recovery[0]!)
  const { client: carol, secret: carolSecret } = await secondAdmin(box, alice, CAROL)
  const { secret: vicSecret, recovery: vicRecovery } = await approvedAccount(
    box,
    alice,
    carol,
    carolSecret,
    { name: 'vic', password: 'Plum-blossom 9 ink' },
    'auditor',
  )

  // From 127.0.0.44: every failure makes the next attempt wait longer, then the lock.
  const outsider = box.client('127.0.0.44')
  const times: number[] = []
  await outsider.get('/login')
  for (let i = 0; i < 5; i++) {
    const t0 = Date.now()
    const r = await outsider.post('/login', { name: 'vic', password: 'guessing 1234!', code: '000000' })
    times.push(Date.now() - t0)
    t.equal(r.status, 401)
  }
  t.ok(times[0]! < base, `the first answered at once (${times[0]} ms)`)
  t.ok(
    times[1]! >= base && times[2]! >= 2 * base && times[3]! >= 4 * base && times[4]! >= 8 * base,
    `then waits of ${times.slice(1).join(', ')} ms (1, 2, 4, 8 × ${base})`,
  )
  const c = box.client()
  await c.get('/login')
  t.equal((await c.post('/login', { name: 'vic', password: 'Plum-blossom 9 ink', code: vicRecovery[0]! })).status, 401, 'vic is locked')

  const dashboard = (await alice.get('/dashboard')).body
  t.match(dashboard, /account vic locked after failed logins from 127\.0\.0\.44 ×5/, 'an alarm with the cause')
  const review = (await alice.get('/logins')).body
  t.match(review, /<td>vic<\/td>\s*<td>127\.0\.0\.44 ×5<\/td>/, 'a line in the failed-login review, with the address')

  // Root at the console, with a code from vic's own authenticator.
  const out = await accountTool(box.configPath, 'unlock', 'vic', '--code', await box.code(vicSecret))
  t.match(out, /vic unlocked/)
  const vic = box.client()
  await vic.get('/login')
  t.equal((await vic.post('/login', { name: 'vic', password: 'Plum-blossom 9 ink', code: vicRecovery[1]! })).status, 303, 'vic logs in')
  const trail = (await alice.get('/audit?type=admin.action')).body
  t.match(trail, /user\.unlock[\s\S]*by console:/, 'the console unlock is audited')
})
