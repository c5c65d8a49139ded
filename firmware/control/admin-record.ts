import { unlinkSync } from 'node:fs'
import { createServer } from 'node:net'
import { userInfo } from 'node:os'
import pino from 'pino'
import type { Clock } from '../../hal/clock.ts'
import type { Hsm } from '../../hal/hsm/index.ts'
import { AuditTrail } from '../audit/trail.ts'
import type { Config } from '../config/load.ts'
import { boxError } from '../box-errors.ts'
import { boxRunning, controlRequests, controlSocketPath, toolActionEvent, type AdminAction } from './server.ts'

export type { AdminAction }

/** The operator behind a tool: the login that ran sudo, else the process's own. */
export function operatorLogin(): string {
  return process.env.SUDO_USER || userInfo().username
}

/**
 * Records what an admin tool did (every admin action audited): through the
 * running box, which is the trail's only writer; or, when no box is running,
 * by opening the trail itself — holding the control socket meanwhile, so a
 * box that starts in that moment stops at once instead of writing beside it.
 * Returns where it went.
 */
export async function recordAdminAction(config: Config, hsm: Hsm, clock: Clock, a: AdminAction): Promise<'box' | 'trail'> {
  const args = { action: a.action, target: a.target, outcome: a.outcome, reason: a.reason, detail: a.detail }
  const path = controlSocketPath(config)
  if (await boxRunning(config)) {
    const [reply] = await controlRequests(path, [{ cmd: 'admin.record', who: operatorLogin(), args }])
    if (!reply?.ok) throw boxError('ECONTROL_REFUSED', `the box did not record the action: ${reply && !reply.ok ? reply.error : 'no reply'}`)
    return 'box'
  }
  try {
    unlinkSync(path) // left by a box that was killed; boxRunning() saw nobody answer on it
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const lock = createServer((c) => c.end(`${JSON.stringify({ ok: false, error: 'an admin tool is writing the audit trail; try again in a moment' })}\n`))
  await new Promise<void>((resolve, reject) => {
    lock.once('error', reject)
    lock.listen(path, () => resolve())
  })
  try {
    const trail = new AuditTrail({ config, log: pino({ level: 'silent' }), hsm, clock })
    await trail.start()
    trail.emit(toolActionEvent(operatorLogin(), a))
    await trail.stop()
  } finally {
    await new Promise<void>((resolve) => lock.close(() => resolve()))
  }
  return 'trail'
}
