import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { BoxMetrics } from '../../firmware/admin/metrics.ts'

/** S11: every metric the shipped alert rules ask about is one the box exports; a rule on a missing metric never fires. */
t.test('the alert rules name only metrics the box exports, and cover what S11 asks', async (t) => {
  const rules = readFileSync(fileURLToPath(new URL('../../provisioning/prometheus/alerts.yml', import.meta.url)), 'utf8')
  const m = new BoxMetrics({
    clock: { now: () => 0 },
    levels: {
      queue: () => ({}),
      oldestQueued: () => undefined,
      bytesOut: () => 0,
      bytesByEgress: () => ({}),
      capBitsPerSecond: () => 1,
      hsm: () => undefined,
      dataDisk: () => ({ free: 1, total: 2 }),
    },
  })
  const exported = new Set((await m.registry.getMetricsAsJSON()).map((x) => x.name))
  const used = new Set([...rules.matchAll(/\bsg_[a-z_]+/g)].map((x) => x[0]))
  t.ok(used.size >= 5)
  for (const name of used) t.ok(exported.has(name), `${name} is exported`)
  for (const alert of ['HsmDown', 'CertificateExpiring', 'QueueOld', 'BounceRateHigh', 'DataDiskLow']) t.match(rules, `alert: StatementGateway${alert}`)
})
