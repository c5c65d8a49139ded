import t from 'tap'
import { ConfigChangeAudit, configDiff } from '../../../firmware/audit/config-change.ts'
import { parseConfig } from '../../../firmware/config/load.ts'
import { auditRig } from '../../helpers/audit.ts'

t.test('configDiff: changed leaves by dotted path, lists as a whole, absent keys as null', async (t) => {
  t.equal(configDiff({ a: { b: 1 }, l: [1, 2] }, { a: { b: 1 }, l: [1, 2] }), undefined)
  t.same(configDiff({ a: { b: 1, c: 'x' }, l: [1, 2] }, { a: { b: 2, c: 'x' }, l: [1, 3], n: true }), {
    before: { 'a.b': 1, l: [1, 2], n: null },
    after: { 'a.b': 2, l: [1, 3], n: true },
  })
})

t.test('S7: each start records what changed in the configuration since the last one, secrets removed', async (t) => {
  const rig = await auditRig(t)
  const changes = () => rig.records().filter((r) => r.type === 'config.changed')
  await new ConfigChangeAudit({ config: rig.config, trail: rig.trail }).start()
  t.equal(changes().length, 1)
  t.match(changes()[0], {
    who: 'configuration file',
    reason: /first start/,
    before: null,
    after: { submission: { accounts: [{ name: 'statements', passwordHash: '[redacted]' }] } },
  })

  await new ConfigChangeAudit({ config: rig.config, trail: rig.trail }).start()
  t.equal(changes().length, 1, 'nothing recorded when nothing changed')

  const edited = parseConfig({ ...JSON.parse(JSON.stringify(rig.config)), delivery: { ...rig.config.delivery, maxConnections: 64 } })
  await new ConfigChangeAudit({ config: edited, trail: rig.trail }).start()
  t.equal(changes().length, 2)
  t.same(changes()[1]!.before, { 'delivery.maxConnections': 32 })
  t.same(changes()[1]!.after, { 'delivery.maxConnections': 64 })
  t.match(changes()[1], { who: 'configuration file', reason: 'the configuration changed between starts' })

  // The version the box starts on names who made the change and who approved it.
  const approved = parseConfig({ ...JSON.parse(JSON.stringify(edited)), delivery: { ...edited.delivery, maxConnections: 16 } })
  const version = async () => ({ number: 7, source: 'page', author: 'mei', approver: 'wang', reason: 'fewer connections (ticket 88)' })
  await new ConfigChangeAudit({ config: approved, trail: rig.trail, version }).start()
  t.match(changes()[2], {
    who: 'mei, approved by wang',
    reason: 'the configuration changed between starts (version 7: fewer connections (ticket 88))',
    after: { 'delivery.maxConnections': 16 },
  })
})
