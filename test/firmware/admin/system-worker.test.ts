import cp from 'node:child_process'
import { syncBuiltinESMExports } from 'node:module'
import t from 'tap'
import { tempDir } from '../../helpers/box.ts'

/*
 * #35: systeminformation runs commands synchronously (execSync): on the box's event loop each
 * was a stall of 10–70 ms every time the dashboard or a monitoring scrape wanted a fresh
 * reading. The hardware view reads on a thread of its own. Node's execSync is watched on this
 * (the main) thread from before anything loads systeminformation: a reading makes no call.
 */
let calls = 0
const execSync = cp.execSync
cp.execSync = ((...args: Parameters<typeof execSync>) => (calls++, execSync(...args))) as typeof execSync
const execFileSync = cp.execFileSync
cp.execFileSync = ((...args: Parameters<typeof execFileSync>) => (calls++, execFileSync(...args))) as typeof execFileSync
syncBuiltinESMExports()

t.test('a hardware reading runs no command on the event loop, and still reads the NICs', async (t) => {
  const { SystemInfo } = await import('../../../firmware/admin/system.ts')
  const info = new SystemInfo({ dataDir: tempDir(t), clock: { now: () => Date.now() } })
  await info.refresh()
  await info.refresh()
  const v = info.current()!
  t.ok(
    v.nics.some((n) => n.name === 'lo'),
    'the NICs, read by the worker',
  )
  t.equal(calls, 0, 'no synchronous child process on this thread')
  // The judge can fail: systeminformation loaded here does call it.
  const si = (await import('systeminformation')).default
  await si.networkInterfaces()
  t.ok(calls > 0, `systeminformation on this thread runs ${calls} commands synchronously`)
})
