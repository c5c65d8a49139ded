import { readFileSync, statSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { Accounts, MAX_FAILURES, PASSWORD_MAX_AGE_MS } from '../../../firmware/admin/accounts.ts'
import { totp } from '../../../firmware/admin/totp.ts'
import { verifyPassword } from '../../../hal/crypto/password.ts'
import type { BoxEvent } from '../../../firmware/events.ts'
import { BOX_KEYS } from '../../../firmware/keys/manifest.ts'
import { unbase32 } from '../../../hal/crypto/base32.ts'
import { tempDir } from '../../helpers/box.ts'
import { devHsm } from '../../helpers/hsm.ts'

const PASSWORD = 'Tea-kettle 7 orchids'

async function rig(t: Parameters<typeof devHsm>[0] & { teardown(fn: () => unknown): void }) {
  const { hsm } = await devHsm(t)
  await hsm.ensureKeys(BOX_KEYS)
  const dataDir = tempDir(t, 'sg-admin-')
  const clock = { value: Date.UTC(2026, 10, 26, 9, 0, 0), now: () => clock.value }
  const events: BoxEvent[] = []
  const make = (dormant?: { days: number; disable: boolean }) => new Accounts({ dataDir, hsm, clock, events: { emit: (e) => events.push(e) }, dormant })
  return { hsm, dataDir, clock, events, accounts: make(), make }
}

/** An account as #31 makes one: approved by a second administrator, its password and authenticator set by the person. */
async function person(
  r: Awaited<ReturnType<typeof rig>>,
  name: string,
  role: 'admin' | 'operator' | 'auditor',
  password: string,
  proposer = 'wang',
  approver = 'chen',
) {
  const code = await r.accounts.createPending(name, role, { proposer, approver, via: 'admin-page' })
  if (!(await r.accounts.welcome(name, code, password, '127.0.0.1')).enrol) throw new Error('a new account enrols its authenticator')
  const uri = (await r.accounts.enrolmentUri(name))!
  const secret = unbase32(new URL(uri).searchParams.get('secret')!.toLowerCase())!
  await r.accounts.confirmTotp(name, totp(secret, r.clock.now()))
  r.clock.value += 30_000
  return secret
}

/** The first administrator, enrolled: returns its secret. */
async function firstAdmin(r: Awaited<ReturnType<typeof rig>>, name = 'wang') {
  const code = r.accounts.ensureSetupCode()!
  const secret = await r.accounts.createFirstAdmin(code, name, PASSWORD, '127.0.0.1')
  const recovery = await r.accounts.confirmTotp(name, totp(secret, r.clock.now()))
  r.clock.value += 30_000
  return { secret, recovery: recovery! }
}

t.test('S8: no default password; the first administrator comes from a one-time setup code, valid 24 h and once', async (t) => {
  const r = await rig(t)
  t.notOk(r.accounts.hasAdmin())
  const code = r.accounts.ensureSetupCode()!
  t.match(code, /^[A-Z2-9]{5}-[A-Z2-9]{5}-[A-Z2-9]{5}-[A-Z2-9]{5}$/)
  t.equal(readFileSync(r.accounts.setupCodeFile, 'utf8'), `${code}\n`, 'written for the console')
  t.equal(statSync(r.accounts.setupCodeFile).mode & 0o777, 0o600)
  t.equal(r.make().ensureSetupCode(), undefined, 'a restart keeps the code printed before')
  t.notOk(r.accounts.checkSetupCode('AAAAA-AAAAA-AAAAA-AAAAA'))
  t.ok(r.accounts.checkSetupCode(code.toLowerCase()), 'typed in lower case is fine')

  r.clock.value += 24 * 3_600_000 + 1
  t.notOk(r.accounts.checkSetupCode(code), 'expired after 24 h')
  const fresh = r.accounts.ensureSetupCode()!
  t.not(fresh, code, 'a new one replaces it')

  await t.rejects(r.accounts.createFirstAdmin(fresh, 'wang', 'short', '127.0.0.1'), /at least 12/)
  const secret = await r.accounts.createFirstAdmin(fresh, 'wang', PASSWORD, '127.0.0.1')
  t.ok(r.accounts.hasAdmin())
  t.notOk(existsSync(r.accounts.setupCodeFile), 'the code file is gone')
  await t.rejects(r.accounts.createFirstAdmin(fresh, 'lin', PASSWORD, '127.0.0.1'), /wrong, used or expired/, 'a second use fails')
  t.equal(r.accounts.ensureSetupCode(), undefined, 'no setup code while an administrator exists')

  t.notOk((await r.accounts.login('wang', PASSWORD, totp(secret, r.clock.now()), '127.0.0.1')).ok, 'no login before MFA is enrolled')
})

t.test('S3: the users file cannot be cracked offline: an HMAC in the HSM comes first, the TOTP secret is sealed', async (t) => {
  const r = await rig(t)
  const { secret } = await firstAdmin(r)
  const file = join(r.dataDir, 'admin', 'users.json')
  t.equal(statSync(file).mode & 0o777, 0o600)
  const text = readFileSync(file, 'utf8')
  t.notMatch(text, PASSWORD)
  t.notMatch(text, secret.toString('base64'))
  t.notMatch(text, secret.toString('hex'))
  const stored = (JSON.parse(text) as { users: { password: string; recovery: string[] }[] }).users[0]!
  t.match(stored.password, /^\$scrypt\$/)
  t.equal(stored.recovery.length, 10)

  // scrypt over the password alone does not match: the HSM's HMAC is needed to test a guess.
  t.notOk(await verifyPassword(PASSWORD, stored.password))
})

t.test('S4: password then TOTP; a code is not taken twice; a recovery code works once', async (t) => {
  const r = await rig(t)
  const { secret, recovery } = await firstAdmin(r)
  t.equal(recovery.length, 10)
  const code = totp(secret, r.clock.now())
  const ok = await r.accounts.login('wang', PASSWORD, code, '127.0.0.1')
  t.match(ok, { ok: true, user: { name: 'wang', role: 'admin', mfaEnrolled: true } })
  t.match(await r.accounts.login('wang', PASSWORD, code, '127.0.0.1'), { ok: false, reason: 'bad-code' }, 'the same code again')
  t.match(await r.accounts.login('wang', PASSWORD, recovery[0]!, '127.0.0.1'), { ok: true })
  t.match(await r.accounts.login('wang', PASSWORD, recovery[0]!, '127.0.0.1'), { ok: false, reason: 'bad-code' }, 'a recovery code is used up')
  t.equal(r.accounts.user('wang')!.recoveryCodesLeft, 9)
  const logins = r.events.filter((e) => e.type === 'admin.login')
  t.same(
    logins.map((e) => [e.outcome, e.reason]),
    [
      ['success', undefined],
      ['failure', 'bad-code'],
      ['success', undefined],
      ['failure', 'bad-code'],
    ],
  )
  t.notOk(JSON.stringify(r.events).includes(PASSWORD), 'no password in any event')
})

t.test('S4: five failed logins lock the account, the right password too after that, until a second administrator unlocks it', async (t) => {
  const r = await rig(t)
  const { secret } = await firstAdmin(r)
  const lin = await person(r, 'lin', 'operator', 'Orchid-kettle 8 tea')
  for (let i = 1; i <= MAX_FAILURES; i++) {
    const res = await r.accounts.login('lin', 'wrong password 1!', '000000', i < 4 ? '192.0.2.9' : '198.51.100.4')
    t.match(res, { ok: false, reason: 'bad-password', lockedNow: i === MAX_FAILURES })
  }
  t.ok(r.accounts.user('lin')!.locked)
  t.same(r.accounts.user('lin')!.lockCause, { '192.0.2.9': 3, '198.51.100.4': 2 }, '#31: the lock keeps where the failures came from')
  t.match(
    r.events.find((e) => e.type === 'admin.action' && e.action === 'user.lock'),
    { target: 'lin', detail: 'from 192.0.2.9 ×3, 198.51.100.4 ×2' },
  )
  t.match(await r.accounts.login('lin', 'Orchid-kettle 8 tea', totp(lin, r.clock.now()), '192.0.2.9'), { ok: false, reason: 'locked' })
  r.accounts.unlock('lin', { proposer: 'wang', approver: 'chen', via: 'admin-page' }, 'called back on the desk phone, checked staff card')
  const unlock = r.events.find((e) => e.type === 'admin.action' && e.action === 'user.unlock')
  t.match(
    unlock,
    { who: 'chen', target: 'lin', reason: 'called back on the desk phone, checked staff card', detail: 'proposed by wang, approved by chen' },
    'S6, #31: the trail has who proposed and who approved',
  )
  t.equal(r.accounts.user('lin')!.lockCause, null)
  r.clock.value += 30_000
  t.match(await r.accounts.login('lin', 'Orchid-kettle 8 tea', totp(lin, r.clock.now()), '192.0.2.9'), { ok: true })

  // An unknown name gets the same answer a person sees, and costs the same scrypt work.
  t.match(await r.accounts.login('nobody', PASSWORD, totp(secret, r.clock.now()), '192.0.2.9'), { ok: false, reason: 'unknown-user' })
})

t.test('S5: roles; disabling is one administrator’s, at once; a disabled account cannot log in; S3: passwords age', async (t) => {
  const r = await rig(t)
  await firstAdmin(r)
  await person(r, 'chen', 'auditor', 'Orchid-kettle 9 tea')
  t.notOk(r.accounts.user('chen')!.passwordExpired, 'the person chose their password: no change is asked at once')
  t.throws(() => r.accounts.checkNewName('chen', 'operator'), /already an account/)
  t.throws(() => r.accounts.checkNewName('Bad Name', 'operator'), /lower-case/)
  t.throws(() => r.accounts.checkNewName('root2', 'superuser' as never), /No such role/)
  t.throws(() => r.accounts.disable('chen', 'wang', 'mine now'), /Only an administrator/)
  r.accounts.disable('wang', 'chen', 'left the firm')
  t.match(await r.accounts.login('chen', 'Orchid-kettle 9 tea', '000000', '127.0.0.1'), { ok: false, reason: 'disabled' })
  t.throws(() => r.accounts.disable('wang', 'wang', 'x'), /own account/)

  t.notOk(r.accounts.user('wang')!.passwordExpired)
  r.clock.value += PASSWORD_MAX_AGE_MS + 1
  t.ok(r.accounts.user('wang')!.passwordExpired, 'a change is asked for after 90 days')
  await t.rejects(r.accounts.changePassword('wang', 'not it', 'Fresh-pear 12 jam'), /current password/)
  await t.rejects(r.accounts.changePassword('wang', PASSWORD, PASSWORD), /differ/)
  await r.accounts.changePassword('wang', PASSWORD, 'Fresh-pear 12 jam')
  t.notOk(r.accounts.user('wang')!.passwordExpired)
  t.notOk(JSON.stringify(r.accounts.users()).includes('scrypt'), 'the views carry no hashes')
})

t.test('S5: an account unused for admin.dormantDays is disabled at its next attempt when the box is told to', async (t) => {
  const r = await rig(t)
  await firstAdmin(r)
  const lin = await person(r, 'lin', 'operator', 'Orchid-kettle 8 tea')
  t.match(await r.accounts.login('lin', 'Orchid-kettle 8 tea', totp(lin, r.clock.now()), '127.0.0.1'), { ok: true })
  r.clock.value += 91 * 86_400_000
  const flagging = r.make({ days: 90, disable: false })
  t.match(await flagging.login('lin', 'Orchid-kettle 8 tea', totp(lin, r.clock.now()), '127.0.0.1'), { ok: true }, 'flagged only: still logs in')
  r.clock.value += 91 * 86_400_000
  const disabling = r.make({ days: 90, disable: true })
  t.match(await disabling.login('lin', 'Orchid-kettle 8 tea', totp(lin, r.clock.now() + 30_000), '127.0.0.1'), { ok: false, reason: 'disabled' })
  t.ok(disabling.user('lin')!.disabled)
  t.match(
    r.events.find((e) => e.type === 'admin.action' && e.action === 'user.disable'),
    { target: 'lin', reason: 'unused for over 90 days' },
  )
})
