import t from 'tap'
import { searchTrail } from '../../../firmware/audit/search.ts'
import type { BoxEvent } from '../../../firmware/events.ts'
import { auditRig } from '../../helpers/audit.ts'

t.test("#15 finding 11: a search by the firm's statement id returns the statement's whole history", async (t) => {
  const rig = await auditRig(t)
  const life = (id: string, statementId: string): BoxEvent[] => [
    { type: 'policy.accepted', id, account: 'firm', profile: 'securities', statementClass: 'monthly', statementId },
    { type: 'signing.signed', id, smime: undefined, dkim: ['bank.example/sg1 rsa-sha256'], encrypted: false },
    { type: 'spool.queued', id, epoch: 'e1', bytes: 100 },
    { type: 'spool.queued', id: `${id}-a`, epoch: 'e1', bytes: 100 },
    {
      type: 'delivery.attempt',
      id,
      kind: 'statement',
      outcome: 'delivered',
      recipients: ['c@example.net'],
      mx: 'mx',
      sourceIp: '127.0.0.11',
      reply: '250 ok',
      tls: 'TLSv1.3',
    },
    { type: 'spool.final', id, outcome: 'delivered', reason: '250 ok' },
  ]
  for (const e of [...life('Q1', 'S-2026-11-1'), ...life('Q2', 'S-2026-11-2')]) rig.trail.emit(e)
  rig.clock.value += 86_400_000 // the final state of the first one on the next day
  rig.trail.emit({ type: 'spool.record_shredded', id: 'Q1' })
  await rig.trail.flush()
  const found: Record<string, unknown>[] = []
  for await (const r of searchTrail(rig.trail.dir, { statementId: 'S-2026-11-1' })) found.push(r)
  t.same(
    found.map((r) => [r.type, r.id]),
    [
      ['policy.accepted', 'Q1'],
      ['signing.signed', 'Q1'],
      ['spool.queued', 'Q1'],
      ['spool.queued', 'Q1-a'],
      ['delivery.attempt', 'Q1'],
      ['spool.final', 'Q1'],
      ['spool.record_shredded', 'Q1'],
    ],
    'queue id → signing, queueing (and the archive copy), attempts, final state, on both days',
  )
  const none: unknown[] = []
  for await (const r of searchTrail(rig.trail.dir, { statementId: 'S-none' })) none.push(r)
  t.same(none, [])
})
