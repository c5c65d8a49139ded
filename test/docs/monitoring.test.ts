import { execFile } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'
import { BoxMetrics } from '../../firmware/admin/metrics.ts'
import { ALARM_KINDS } from '../../firmware/admin/views.ts'
import { tempDir } from '../helpers/box.ts'

// S11, #34: the operator's monitoring kit in docs/monitoring/, judged by Prometheus' own promtool.

const run = promisify(execFile)
const DIR = fileURLToPath(new URL('../../docs/monitoring/', import.meta.url))
const rules = readFileSync(join(DIR, 'alerts.yml'), 'utf8')

/** What the box exports, by name (a histogram also as its _bucket, _sum and _count series). */
async function exported(): Promise<Set<string>> {
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
  const names = (await m.registry.getMetricsAsJSON()).map((x) => x.name)
  return new Set(names.flatMap((n) => [n, `${n}_bucket`, `${n}_sum`, `${n}_count`]))
}

t.test('promtool: the alert rules are valid, and their cases fire as written', async (t) => {
  const check = await run('promtool', ['check', 'rules', join(DIR, 'alerts.yml')])
  t.match(check.stdout, /SUCCESS: \d+ rules found/)
  const cases = await run('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: DIR })
  t.match(cases.stdout, /SUCCESS/)
})

t.test('the rules name only metrics the box exports, and cover what S11 asks', async (t) => {
  const names = await exported()
  const used = new Set([...rules.matchAll(/\bsg_[a-z_]+/g)].map((x) => x[0]))
  t.ok(used.size >= 6)
  for (const name of used) t.ok(names.has(name), `${name} is exported`)
  for (const alert of ['HsmDown', 'CertificateExpiring', 'QueueOld', 'BounceRateHigh', 'DataDiskLow']) t.match(rules, `alert: StatementGateway${alert}`)
})

t.test('every alarm the dashboard raises has a rule (ALARM_KINDS)', async (t) => {
  for (const kind of ALARM_KINDS) t.match(rules, `expr: sg_alarms{kind="${kind}"} > 0`, kind)
  const inRules = [...rules.matchAll(/sg_alarms\{kind="([a-z-]+)"\}/g)].map((m) => m[1])
  t.same(
    inRules.filter((k) => !(ALARM_KINDS as readonly string[]).includes(k!)),
    [],
    'no rule for a kind the box does not raise',
  )
})

t.test('the Grafana dashboard: its queries parse as PromQL and name only exported series', async (t) => {
  const dash = JSON.parse(readFileSync(join(DIR, 'grafana-dashboard.json'), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] }
  t.ok(dash.panels.length >= 10, `${dash.panels.length} panels`)
  const exprs = dash.panels.flatMap((p) => p.targets.map((x) => ({ title: p.title, expr: x.expr.replaceAll('$instance', '.*') })))
  const names = await exported()
  for (const { title, expr } of exprs) for (const [n] of expr.matchAll(/\bsg_[a-z_]+/g)) t.ok(names.has(n), `${title}: ${n} is exported`)
  // promtool parses each query as the expression of a recording rule.
  const dir = tempDir(t)
  const file = join(dir, 'dashboard-queries.yml')
  const body = exprs.map((e, i) => `      - record: dashboard:query_${i}\n        expr: ${JSON.stringify(e.expr)}`).join('\n')
  writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${body}\n`)
  const check = await run('promtool', ['check', 'rules', file])
  t.match(check.stdout, `SUCCESS: ${exprs.length} rules found`)
})

t.test('a query that is not PromQL is refused by the same check (it can fail)', async (t) => {
  const file = join(tempDir(t), 'bad.yml')
  writeFileSync(file, 'groups:\n  - name: x\n    rules:\n      - record: x:y\n        expr: "sum by (outcome (rate(sg_submissions_total[5m]))"\n')
  await t.rejects(run('promtool', ['check', 'rules', file]))
})
