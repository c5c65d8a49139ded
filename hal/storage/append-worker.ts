import { closeSync, constants, fstatSync, ftruncateSync, openSync, writeSync } from 'node:fs'
import { parentPort, workerData } from 'node:worker_threads'

/**
 * The thread behind `AppendThread` (append-thread.ts): one file descriptor
 * opened O_APPEND | O_DSYNC, one write at a time, each durable when it returns.
 */
const fd = openSync((workerData as { path: string }).path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_DSYNC, 0o600)
let size = fstatSync(fd).size

parentPort!.on('message', (m: { id: number; text?: string; close?: boolean }) => {
  if (m.close) {
    closeSync(fd)
    parentPort!.close()
    return
  }
  const at = Date.now()
  const data = Buffer.from(m.text!.replaceAll('\u0001', at.toString(36)), 'latin1')
  const t0 = performance.now()
  try {
    const written = writeSync(fd, data)
    if (written !== data.length) throw Object.assign(new Error(`write cut short (${written} of ${data.length} bytes)`), { code: 'ENOSPC' })
    size += written
    parentPort!.postMessage({ id: m.id, at, ms: performance.now() - t0 })
  } catch (err) {
    try {
      ftruncateSync(fd, size)
    } catch {
      // the next write finds the same trouble
    }
    const e = err as NodeJS.ErrnoException
    parentPort!.postMessage({ id: m.id, error: { message: e.message, code: e.code } })
  }
})
