import t from 'tap'
import { AccountProposals } from '../../../firmware/admin/account-proposals.ts'
import { Accounts } from '../../../firmware/admin/accounts.ts'
import { consoleAccountAction } from '../../../firmware/admin/console.ts'
import { totp } from '../../../firmware/admin/totp.ts'
import type { BoxEvent } from '../../../firmware/events.ts'
import { BOX_KEYS } from '../../../firmware/keys/manifest.ts'
import { unbase32 } from '../../../hal/crypto/base32.ts'
import { tempDir } from '../../helpers/box.ts'
import { devHsm } from '../../helpers/hsm.ts'

/** #31: four eyes means two people: account changes are proposals a different, real administrator approves. */

const PASSWORD = 'Tea-kettle 7 orchids'

async function rig(t: { teardown(fn: () => unknown): void }) {
  const { hsm } = await devHsm(t)
  await hsm.ensureKeys(BOX_KEYS)
  const dataDir = tempDir(t, 'sg-admin-')
  const clock = { value: Date.UTC(2026, 10, 26, 9, 0, 0), now: () => clock.value }
  const events: BoxEvent[] = []
  const accounts = new Accounts({ dataDir, hsm, clock, events: { emit: (e) => events.push(e) } })
  const proposals = new AccountProposals({ dataDir, accounts, clock, events: { emit: (e) => events.push(e) }, expiryHours: 72 })
  const secrets = new Map<string, Buffer>()
  /** A fresh code of `name`'s authenticator (the clock moves on a step, so no code is taken twice). */
  const code = (name: string) => {
    clock.value += 30_000
    return totp(secrets.get(name)!, clock.now())
  }
  /** The person sets their password with the code they were handed, and enrols their authenticator. */
  const welcome = async (name: string, enrolment: string, password = PASSWORD) => {
    await accounts.welcome(name, enrolment, password, '127.0.0.1')
    const uri = (await accounts.enrolmentUri(name))!
    secrets.set(name, unbase32(new URL(uri).searchParams.get('secret')!.toLowerCase())!)
    await accounts.confirmTotp(name, code(name))
  }
  const setup = accounts.ensureSetupCode()!
  secrets.set('alice', await accounts.createFirstAdmin(setup, 'alice', PASSWORD, '127.0.0.1'))
  await accounts.confirmTotp('alice', code('alice'))
  return { accounts, proposals, events, clock, code, welcome }
}

t.test("one administrator cannot act as two: alice's new admin bob is a proposal nobody but a second person approves", async (t) => {
  const r = await rig(t)
  const p = r.proposals.propose('alice', { kind: 'create', name: 'bob', role: 'admin' }, 'a second administrator for the night shift')
  t.equal(r.accounts.user('bob'), undefined, 'a proposal, not an account')
  await t.rejects(r.proposals.approve(p.id, 'alice', r.code('alice')), /not by its author/, "alice's own approval is refused")
  // With one administrator, the second is enrolled at the box's console (being there is the second person).
  const enrolled = await consoleAccountAction(r.accounts, 'account.enrol', { name: 'carol', role: 'admin' }, 'root')
  t.match(enrolled, { code: /^[A-Z2-9]{5}(-[A-Z2-9]{5}){3}$/ })
  await r.welcome('carol', enrolled.code!)
  await t.rejects(
    consoleAccountAction(r.accounts, 'account.enrol', { name: 'dave', role: 'admin' }, 'root'),
    /Two administrators exist/,
    'with two, the console enrols no more: accounts are proposals',
  )
  const done = await r.proposals.approve(p.id, 'carol', r.code('carol'))
  t.match(done.enrolmentCode, /^[A-Z2-9]{5}(-[A-Z2-9]{5}){3}$/, 'the approver gets a one-time enrolment code, no password')
  t.match(r.accounts.user('bob'), { role: 'admin', enrolmentPending: true, mfaEnrolled: false })
  t.match(await r.accounts.login('bob', PASSWORD, '000000', '127.0.0.1'), { ok: false, reason: 'bad-password' }, 'nobody knows a password for bob yet')
  await r.welcome('bob', done.enrolmentCode!, 'Tiger-chooses 8 his own!')
  await t.rejects(r.accounts.welcome('bob', done.enrolmentCode!, 'Mallory-9 takes over!', '127.0.0.1'), /wrong, used or expired/, 'the code works once')
  const trail = r.events.filter((e) => e.type === 'admin.action' && e.action === 'user.create')
  t.match(trail, [
    { who: 'root', target: 'carol', detail: /role admin; by console:root, console/ },
    { who: 'carol', target: 'bob', detail: 'role admin; proposed by alice, approved by carol' },
  ])
  t.notOk(JSON.stringify(r.events).includes('Tiger-chooses'), 'no password in any event')
})

t.test('no approval by a minted account: what alice made or changed does not approve her changes', async (t) => {
  const r = await rig(t)
  const carol = await consoleAccountAction(r.accounts, 'account.enrol', { name: 'carol', role: 'admin' }, 'root')
  await r.welcome('carol', carol.code!)
  // Alice proposes bob; carol approves. Bob is an account made on alice's proposal.
  const p = r.proposals.propose('alice', { kind: 'create', name: 'bob', role: 'admin' }, 'more hands')
  await r.welcome('bob', (await r.proposals.approve(p.id, 'carol', r.code('carol'))).enrolmentCode!)
  const later = r.proposals.propose('alice', { kind: 'create', name: 'erin', role: 'operator' }, 'an operator')
  await t.rejects(
    r.proposals.approve(later.id, 'bob', r.code('bob')),
    /bob's account was made on .* \(proposed by alice, approved by carol\): it does not approve alice's changes/,
  )
  t.match(r.accounts.mintedBy('bob', 'alice', 0), /proposed by alice/, 'the same answer for a config change, a factory reset, a firmware install')
  t.equal(r.accounts.mintedBy('carol', 'alice', 0), undefined, 'carol was made at the console: she may approve')
  t.equal(r.accounts.mintedBy('bob', 'carol', r.clock.now() + 1), undefined, 'a change before the window does not count')
  t.ok(
    r.events.some((e) => e.type === 'admin.action' && e.action === 'user.proposal.approval-refused' && e.who === 'bob'),
    'the refusal is recorded',
  )
  const done = await r.proposals.approve(later.id, 'carol', r.code('carol'))
  t.match(done.proposal, { state: 'approved', decidedBy: 'carol' })
})

t.test('what makes or strengthens an account is a proposal; disabling and taking the admin role away are at once', async (t) => {
  const r = await rig(t)
  const carol = await consoleAccountAction(r.accounts, 'account.enrol', { name: 'carol', role: 'admin' }, 'root')
  await r.welcome('carol', carol.code!)
  const p = r.proposals.propose('alice', { kind: 'create', name: 'lin', role: 'operator' }, 'new operator')
  await r.welcome('lin', (await r.proposals.approve(p.id, 'carol', r.code('carol'))).enrolmentCode!)
  t.throws(() => r.proposals.propose('alice', { kind: 'unlock', name: 'lin' }, 'x'), /not locked/)
  r.accounts.disable('alice', 'lin', 'on leave')
  t.ok(r.accounts.user('lin')!.disabled, 'disabled at once')
  const enable = r.proposals.propose('alice', { kind: 'enable', name: 'lin' }, 'back from leave')
  t.ok(r.accounts.user('lin')!.disabled, 'enabling waits for approval')
  await t.rejects(r.proposals.approve(enable.id, 'carol', '000000'), /authenticator code is not right/, 'the approver’s second factor again')
  await r.proposals.approve(enable.id, 'carol', r.code('carol'))
  t.notOk(r.accounts.user('lin')!.disabled)
  const raise = r.proposals.propose('alice', { kind: 'role', name: 'lin', role: 'admin' }, 'promoted')
  t.equal(r.accounts.user('lin')!.role, 'operator', 'raising waits for approval')
  await r.proposals.approve(raise.id, 'carol', r.code('carol'))
  t.equal(r.accounts.user('lin')!.role, 'admin')
  t.throws(() => r.proposals.propose('alice', { kind: 'role', name: 'lin', role: 'auditor' }, 'x'), /done at once/)
  r.accounts.lowerRole('alice', 'lin', 'auditor', 'moved to internal audit')
  t.equal(r.accounts.user('lin')!.role, 'auditor', 'taking the admin role away: at once')
  const reset = r.proposals.propose('alice', { kind: 'reset-password', name: 'lin' }, 'forgot it')
  const { enrolmentCode } = await r.proposals.approve(reset.id, 'carol', r.code('carol'))
  t.match(await r.accounts.login('lin', PASSWORD, r.code('lin'), '127.0.0.1'), { ok: false }, 'the old password stops working')
  t.same(
    await r.accounts.welcome('lin', enrolmentCode!, 'Pear-sets 5 a new one!', '127.0.0.1'),
    { enrol: false },
    'set again by the person; the authenticator stays',
  )
  t.match(await r.accounts.login('lin', 'Pear-sets 5 a new one!', r.code('lin'), '127.0.0.1'), { ok: true })
  const expiring = r.proposals.propose('alice', { kind: 'reset-mfa', name: 'lin' }, 'new phone')
  r.clock.value += 73 * 3_600_000
  t.equal(r.proposals.get(expiring.id)!.state, 'expired', 'a proposal expires after admin.proposalExpiryHours')
})

t.test('a lock is undone at the console: with the account’s own code, or by enrolling again', async (t) => {
  const r = await rig(t)
  for (let i = 0; i < 5; i++) await r.accounts.login('alice', 'wrong password 1!', '000000', '192.0.2.44')
  t.match(r.accounts.user('alice'), { locked: true, lockCause: { '192.0.2.44': 5 } })
  await t.rejects(consoleAccountAction(r.accounts, 'account.unlock', { name: 'alice', code: '000000' }, 'root'), /not a current code/)
  await consoleAccountAction(r.accounts, 'account.unlock', { name: 'alice', code: r.code('alice') }, 'root')
  t.notOk(r.accounts.user('alice')!.locked)
  t.match(
    r.events.filter((e) => e.type === 'admin.action' && e.action === 'user.unlock'),
    [
      { outcome: 'refused', via: 'cli' },
      { outcome: 'ok', via: 'cli', detail: 'by console:root, console' },
    ],
  )
  for (let i = 0; i < 5; i++) await r.accounts.login('alice', 'wrong password 1!', '000000', '192.0.2.44')
  await t.rejects(consoleAccountAction(r.accounts, 'account.re-enrol', { name: 'alice' }, 'root'), /say why/)
  const again = await consoleAccountAction(r.accounts, 'account.re-enrol', { name: 'alice', reason: 'lost her phone; identified by her staff card' }, 'root')
  await r.welcome('alice', again.code!, 'Plum-again 4 fresh!')
  t.match(await r.accounts.login('alice', 'Plum-again 4 fresh!', r.code('alice'), '127.0.0.1'), { ok: true })
})
