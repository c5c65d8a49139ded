import t from 'tap'
import { parseConfig } from '../../../firmware/config/load.ts'
import { LIVE_KEYS } from '../../../firmware/config/schema.ts'
import { ConfigStore, valueAt, withLiveKeys } from '../../../firmware/config/store.ts'

// S7 / #34: one live configuration; holders are told, readers read `current`.

const base = parseConfig({ delivery: { notifyAddress: 'ops@bank.example' } })

t.test('only the live keys of an approved configuration come into force; the rest waits for a start', async (t) => {
  const next = parseConfig({ dataDir: '/elsewhere', returnPath: { listen: '0.0.0.0:2526' }, delivery: { smtpPort: 2525, maxConnections: 7 } })
  const store = new ConfigStore(base)
  await store.set(next)
  t.equal(store.current.delivery.smtpPort, 2525, 'delivery.smtpPort is live')
  t.equal(store.current.delivery.notifyAddress, '', 'delivery.notifyAddress is live (cleared)')
  t.equal(store.current.dataDir, base.dataDir, 'dataDir waits for a start')
  t.equal(store.current.returnPath.listen, base.returnPath.listen, 'the return path waits for a start')
  t.equal(store.current.delivery.maxConnections, base.delivery.maxConnections, 'connection limits wait for a start')
  t.ok(Object.isFrozen(store.current.delivery), 'frozen like a parsed configuration')
  for (const key of LIVE_KEYS) t.same(valueAt(withLiveKeys(base, next), key), valueAt(next, key), key)
})

t.test('holders are told when one of their keys changes, in order, and only then', async (t) => {
  const store = new ConfigStore(base)
  const told: string[] = []
  store.on('policy', ['policy'], () => void told.push('policy'))
  store.on(
    'delivery',
    ['delivery.smtpPort', 'delivery.timeouts'],
    (next, previous) => void told.push(`delivery ${previous.delivery.smtpPort}→${next.delivery.smtpPort}`),
  )
  await store.set(parseConfig({ delivery: { smtpPort: 2526, notifyAddress: 'ops@bank.example' } }))
  t.same(told, ['delivery 25→2526'])
  await store.set(store.current)
  t.same(told, ['delivery 25→2526'], 'nothing changed: nobody told')
})

t.test('a holder that refuses: those already told get the old configuration back, and current stays', async (t) => {
  const store = new ConfigStore(base)
  const seen: number[] = []
  store.on('first', ['delivery.smtpPort'], (next) => void seen.push(next.delivery.smtpPort))
  store.on('second', ['delivery.smtpPort'], () => {
    throw new Error('cannot bind')
  })
  await t.rejects(store.set(parseConfig({ delivery: { smtpPort: 2527, notifyAddress: 'ops@bank.example' } })), /cannot bind/)
  t.same(seen, [2527, 25], 'told the change, then told it back')
  t.equal(store.current.delivery.smtpPort, 25)
})

t.test('readers are listed beside holders', async (t) => {
  const store = new ConfigStore(base)
  store.on('delivery', ['delivery.routes'], () => undefined)
  store.reads('submission:tracking', ['policy'])
  t.same(store.subscriptions, [
    { owner: 'delivery', keys: ['delivery.routes'], holds: true },
    { owner: 'submission:tracking', keys: ['policy'], holds: false },
  ])
})
