import { readFileSync } from 'node:fs'
import t from 'tap'
import { DAEMON_ENV, DAEMON_NODE_ARGS, missingDaemonEnv } from '../../firmware/runtime.ts'

t.test('npm start runs the daemon with the runtime settings the box is measured with', async (t) => {
  const start = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { scripts: { start: string } }).scripts.start
  for (const [k, v] of Object.entries(DAEMON_ENV)) t.match(start, `${k}=${v} `, `${k}`)
  for (const a of DAEMON_NODE_ARGS) t.match(start, `node ${a} firmware/main.ts`, a)
  t.same(missingDaemonEnv({}), ['MALLOC_MMAP_THRESHOLD_=4194304', 'MALLOC_ARENA_MAX=2', 'UV_THREADPOOL_SIZE=16'])
  t.same(missingDaemonEnv({ ...DAEMON_ENV }), [])
})
