import { fdatasyncSync, writeSync } from 'node:fs'
import { parentPort, workerData } from 'node:worker_threads'

/**
 * The sync thread behind `AppendThread` (append-thread.ts): waits for the
 * appends to publish a new end of file in `state[0]`, runs
 * one fdatasync for everything written up to it (a group commit without a
 * queue: writes go on meanwhile) and reports that end durable. `state[2]`
 * set asks it to stop once it has synced what was written. Whoever changes
 * either bumps `state[1]`, the number it sleeps on, so no wake-up is missed.
 */
const { fd, shared, from, flushLog } = workerData as { fd: number; shared: SharedArrayBuffer; from: number; flushLog?: number }
const state = new BigInt64Array(shared)
let synced = BigInt(from)

for (;;) {
  const generation = Atomics.load(state, 1)
  const end = Atomics.load(state, 0)
  if (end !== synced) {
    try {
      fdatasyncSync(fd)
      const at = performance.timeOrigin + performance.now()
      // For the reliability suite (SG_JOURNAL_FLUSH_LOG): where each flush ended and when, in a file a kill -9 leaves.
      if (flushLog !== undefined) writeSync(flushLog, `${end} ${at.toFixed(3)}\n`)
      parentPort!.postMessage({ durable: Number(end), at })
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      parentPort!.postMessage({ durable: Number(end), error: { message: e.message, code: e.code } })
    }
    synced = end
    continue
  }
  if (Atomics.load(state, 2) !== 0n) break
  Atomics.wait(state, 1, generation)
}
parentPort!.close()
