import { readFileSync, readdirSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { spawnDaemon, writeDaemonConfig } from '../test/helpers/daemon.ts'

t.test('idle', async (t) => {
  const cfg = await writeDaemonConfig(t, { submission: { memoryBudgetBytes: 256 * 1024 * 1024 }, delivery: { enabled: false }, spool: { verifyOnStart: false } })
  const child = spawnDaemon(t, ['--config', cfg.path], { coverage: false })
  await child.waitFor((r) => r.msg === 'statement gateway started')
  await sleep(2000)
  const pid = child.proc.pid!
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const threads = readdirSync(`/proc/${pid}/task`).map((tid) => readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim())
  t.comment(/VmRSS.*|RssAnon.*|RssFile.*/g[Symbol.match](status)?.join(' '))
  const counts: Record<string, number> = {}
  for (const n of threads) counts[n] = (counts[n] ?? 0) + 1
  t.comment(JSON.stringify(counts))
  const smaps = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')
  t.comment(smaps.split('\n').slice(0, 8).join(' | '))
  t.pass()
})
