import t from 'tap'
import { ConfigError, type Config } from '../../../firmware/config/load.ts'
import { Proposals } from '../../../firmware/config/proposals.ts'
import { ConfigVersions } from '../../../firmware/config/versions.ts'
import type { BoxEvent } from '../../../firmware/events.ts'
import { CONFIG_VERSION_LABEL } from '../../../firmware/keys/labels.ts'
import { BOX_KEYS } from '../../../firmware/keys/manifest.ts'
import { tempDir } from '../../helpers/box.ts'
import { devHsm } from '../../helpers/hsm.ts'

async function rig(t: Parameters<typeof devHsm>[0], allowSelfApproval = false) {
  const { hsm } = await devHsm(t)
  await hsm.ensureKeys(BOX_KEYS)
  const dataDir = tempDir(t, 'sg-proposals-')
  const events: BoxEvent[] = []
  const clock = { value: Date.UTC(2026, 10, 26, 10, 0, 0), now: () => clock.value }
  const sink = { emit: (e: BoxEvent) => events.push(e) }
  const versions = new ConfigVersions({
    dataDir,
    mac: (d) => hsm.keys.hmac(CONFIG_VERSION_LABEL, d),
    clock,
    events: sink,
    given: { raw: { log: { level: 'info' } }, from: 'file x' },
  })
  await versions.start()
  const proposals = new Proposals({ dataDir, versions, clock, events: sink, expiryHours: 72, allowSelfApproval })
  const applied: [string, string][] = []
  const apply = async (next: Config, previous: Config) => void applied.push([next.log.level, previous.log.level])
  return { versions, proposals, clock, events, applied, apply }
}

t.test('S7: a proposal is checked against the schema, needs a reason, and must change something', async (t) => {
  const r = await rig(t)
  await t.rejects(r.proposals.propose('wang', { log: { level: 'loud' } }, 'more logs'), ConfigError)
  await t.rejects(r.proposals.propose('wang', { log: { level: 'debug' } }, ' '), /A reason is needed/)
  await t.rejects(r.proposals.propose('wang', { log: { level: 'info' } }, 'same'), /in force already/)
})

t.test('S5: four eyes: not by its author; by a second administrator on the content shown, applied, then the next version', async (t) => {
  const r = await rig(t)
  const p = await r.proposals.propose('wang', { log: { level: 'debug' } }, 'investigate ticket 4411')
  t.match(p, { state: 'open', baseVersion: 1, author: 'wang' })
  const hash = Proposals.contentHash(p)
  await t.rejects(r.proposals.approve(p.id, 'wang', hash, r.apply), /second administrator, not by its author/)
  await t.rejects(r.proposals.approve(p.id, 'lin', 'f'.repeat(64), r.apply), /not what was shown/)
  const v = await r.proposals.approve(p.id, 'lin', hash, r.apply)
  t.match(v, { number: 2, author: 'wang', approver: 'lin', reason: 'investigate ticket 4411', source: 'page' })
  t.same(r.applied, [['debug', 'info']], 'applied to the running box: next, then previous')
  t.match(r.proposals.get(p.id), { state: 'approved', decidedBy: 'lin', version: 2 })
  await t.rejects(r.proposals.approve(p.id, 'chen', hash, r.apply), /is approved/)
  t.match(
    r.events.filter((e) => e.type === 'config.proposal').map((e) => [e.action, e.who]),
    [
      ['proposed', 'wang'],
      ['approved', 'lin'],
    ],
  )
  t.match(r.events.at(-2), { type: 'config.version', number: 2, approver: 'lin' })
})

t.test('a change a component refuses is rolled back and recorded as failed; the version in force stays', async (t) => {
  const r = await rig(t)
  const p = await r.proposals.propose('wang', { log: { level: 'warn' } }, 'quieter')
  let calls = 0
  const refusing = async (next: Config) => {
    calls++
    if (next.log.level === 'warn') throw new Error('the logger refuses warn')
  }
  await t.rejects(r.proposals.approve(p.id, 'lin', Proposals.contentHash(p), refusing), /Not applied, the box keeps version 1: the logger refuses warn/)
  t.equal(calls, 2, 'applied, then the previous configuration put back')
  t.match(r.proposals.get(p.id), { state: 'failed', note: /a component refused it/ })
  t.equal((await r.versions.inForce())!.number, 1)
})

t.test('withdrawn by either, expired after its time, proposed against a version no longer in force: none is applied', async (t) => {
  const r = await rig(t)
  const a = await r.proposals.propose('wang', { log: { level: 'debug' } }, 'a')
  r.proposals.withdraw(a.id, 'lin')
  t.match(r.proposals.get(a.id), { state: 'withdrawn', decidedBy: 'lin' })
  const b = await r.proposals.propose('wang', { log: { level: 'debug' } }, 'b')
  r.clock.value += 72 * 3_600_000 + 1
  t.match(
    r.proposals.list().find((x) => x.id === b.id),
    { state: 'expired' },
  )
  await t.rejects(r.proposals.approve(b.id, 'lin', Proposals.contentHash(b), r.apply), /is expired/)
  const c = await r.proposals.propose('wang', { log: { level: 'debug' } }, 'c')
  const d = await r.proposals.propose('wang', { log: { level: 'error' } }, 'd')
  await r.proposals.approve(c.id, 'lin', Proposals.contentHash(c), r.apply)
  await t.rejects(r.proposals.approve(d.id, 'lin', Proposals.contentHash(d), r.apply), /propose it again/)
  t.throws(() => r.proposals.withdraw('nonesuch0000', 'lin'), /No proposal nonesuch0000/)
})

t.test('S7: rollback in one step: any earlier version proposed again, through the same approval', async (t) => {
  const r = await rig(t)
  const p = await r.proposals.propose('wang', { log: { level: 'debug' } }, 'more logs')
  await r.proposals.approve(p.id, 'lin', Proposals.contentHash(p), r.apply)
  const back = await r.proposals.restore('lin', 1, 'the debug logs filled the disk')
  t.match(back, { author: 'lin', reason: 'restore version 1: the debug logs filled the disk', config: { log: { level: 'info' } } })
  const v = await r.proposals.approve(back.id, 'wang', Proposals.contentHash(back), r.apply)
  t.match(v, { number: 3, config: { log: { level: 'info' } } })
  await t.rejects(r.proposals.restore('lin', 9, 'x'), /no version 9/)

  // A version from before a firmware upgrade comes back at the current schema.
  await r.versions.add({ config: { admin: { host: '127.0.0.1', port: 9443 } }, author: 'old firmware', approver: '', reason: 'r', source: 'file' })
  await t.rejects(r.proposals.restore('lin', 4, 'x'), /in force already/, 'the same configuration at another schema is no change')
  await r.versions.add({ config: { log: { level: 'debug' } }, author: 'file', approver: '', reason: 'r', source: 'file' })
  const old = await r.proposals.restore('lin', 4, 'back to the old port')
  t.same(old.config, { admin: { listen: '127.0.0.1:9443' }, schemaVersion: 2 })
})

t.test('a box with a single administrator may allow self-approval, recorded on every change', async (t) => {
  const r = await rig(t, true)
  const p = await r.proposals.propose('wang', { log: { level: 'debug' } }, 'alone tonight')
  const v = await r.proposals.approve(p.id, 'wang', Proposals.contentHash(p), r.apply)
  t.match(v, { approver: 'wang', reason: /approved by its author: self-approval is allowed on this box/ })
  t.match(r.proposals.get(p.id), { note: 'self-approved' })
})
