import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { parseConfig } from '../../../firmware/config/load.ts'
import { ConnectionPool } from '../../../firmware/delivery/pool.ts'
import { tempDir } from '../../helpers/box.ts'
import { devHsm } from '../../helpers/hsm.ts'
import { deliveryRig, finals, route } from '../../helpers/delivery.ts'
import { startReceiver, until } from '../../helpers/receiver.ts'

t.test('S1: TLS required but the receiver offers none → deferred, never sent in clear', async (t) => {
  const { hsm } = await devHsm(t)
  const plain = await startReceiver(t, { tls: false })
  const rig = await deliveryRig(t, hsm, { ...route(plain.port), requireTls: ['example.net'] })
  const m = await rig.enqueue('secret@example.net')
  await until(() => rig.spool.entry(m.id)?.state === 'deferred')
  t.same(plain.commands, [], 'not even MAIL FROM was sent')
  t.match(
    rig.events.find((e) => e.type === 'spool.deferred'),
    { reason: /TLS is required/ },
  )
})

t.test('S1: TLS required verifies the certificate: an untrusted one defers, one from the configured CA delivers', async (t) => {
  const { hsm } = await devHsm(t)
  const rx = await startReceiver(t)
  const untrusted = await deliveryRig(t, hsm, { ...route(rx.port), requireTls: ['example.net'] })
  const m = await untrusted.enqueue('secret@example.net')
  await until(() => untrusted.spool.entry(m.id)?.state === 'deferred')
  t.match(
    untrusted.events.find((e) => e.type === 'spool.deferred'),
    { reason: /TLS handshake failed: self[- ]signed certificate/ },
  )
  t.same(rx.commands, [], 'nothing sent to a server whose certificate the box cannot verify')

  const caFile = join(tempDir(t), 'firm-ca.pem')
  writeFileSync(caFile, rx.certPem)
  const trusted = await deliveryRig(t, hsm, { ...route(rx.port), requireTls: ['example.net'], tlsCaFile: caFile })
  const n = await trusted.enqueue('secret@example.net')
  await until(() => finals(trusted.events)[n.id] === 'delivered')
  t.equal(rx.received.length, 1)
  t.ok(rx.received[0]!.tls, 'delivered over TLS')
  t.match(
    trusted.events.find((e) => e.type === 'delivery.attempt' && e.id === n.id),
    { tls: /^TLSv1\.[23]$/ },
  )
})

t.test('a tlsCaFile that holds no certificate stops start-up naming the key', async (t) => {
  const bad = join(tempDir(t), 'not-a-ca.pem')
  writeFileSync(bad, 'hello')
  t.throws(() => parseConfig({ delivery: { tlsCaFile: bad } }), {
    name: 'ConfigError',
    code: 'ECONFIG_INVALID',
    message: /delivery\.tlsCaFile.*not a readable PEM file/,
  })
})

t.test('#35: connections opened together close at different counts, at most messagesPerConnection each', async (t) => {
  t.same(
    [0, 1, 2, 3, 4, 5].map((n) => ConnectionPool.limitFor(100, n)),
    [100, 88, 76, 64, 100, 88],
  )
  t.same([ConnectionPool.limitFor(1, 3), ConnectionPool.limitFor(7, 3)], [1, 7], 'below 8 every connection carries the whole count')
  const { hsm } = await devHsm(t)
  const rx = await startReceiver(t)
  const rig = await deliveryRig(t, hsm, { ...route(rx.port), messagesPerConnection: 8 })
  for (let i = 0; i < 40; i++) await rig.enqueue(`c${i}@example.net`)
  await until(() => rx.received.length === 40)
  const perSession = new Map<string, number>()
  for (const r of rx.received) perSession.set(r.session, (perSession.get(r.session) ?? 0) + 1)
  const counts = [...perSession.values()]
  t.ok(
    counts.every((n) => n <= 8),
    `no connection carried more than 8 (${counts.join(', ')})`,
  )
  for (const n of [8, 7, 6, 5]) t.ok(counts.includes(n), `a connection closed after ${n}`)
})
