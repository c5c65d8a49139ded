import { closeSync, constants, fdatasyncSync, openSync, writeSync } from 'node:fs'
import { parentPort, workerData } from 'node:worker_threads'

/**
 * The sync thread behind `AppendThread` (append-thread.ts): waits for the
 * writer (append-worker.ts) to publish a new end of file in `state[0]`, runs
 * one fdatasync for everything written up to it (a group commit without a
 * queue: writes go on meanwhile) and reports that end durable. `state[2]`
 * set asks it to stop once it has synced what was written. Whoever changes
 * either bumps `state[1]`, the number it sleeps on, so no wake-up is missed.
 */
const { fd, shared, from, flushLog: logPath } = workerData as { fd: number; shared: SharedArrayBuffer; from: number; flushLog?: string }
// For the reliability suite (SG_JOURNAL_FLUSH_LOG): where this file's appends began, then where each flush ended and when, in a file a kill -9 leaves.
const flushLog = logPath === undefined ? undefined : openSync(logPath, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600)
if (flushLog !== undefined) writeSync(flushLog, `start ${from}\n`)
const state = new BigInt64Array(shared)
let synced = BigInt(from)

for (;;) {
  const generation = Atomics.load(state, 1)
  const end = Atomics.load(state, 0)
  if (end !== synced) {
    try {
      fdatasyncSync(fd)
      const at = performance.timeOrigin + performance.now()
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
if (flushLog !== undefined) closeSync(flushLog)
parentPort!.close()
