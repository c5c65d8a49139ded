import { closeSync, constants, fstatSync, ftruncateSync, openSync, writeSync } from 'node:fs'
import { parentPort, workerData } from 'node:worker_threads'

/**
 * The writer behind `AppendThread` (append-thread.ts): one file descriptor
 * opened O_APPEND, one write at a time, each in the page cache when it returns
 * (what a killed process cannot take back), then published in `written` for
 * the sync thread (sync-worker.ts), which makes it durable (`state`: see there). A write is never
 * queued behind an fdatasync.
 */
const { path, shared } = workerData as { path: string; shared: SharedArrayBuffer }
const state = new BigInt64Array(shared)
const fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o600)
let size = fstatSync(fd).size
Atomics.store(state, 0, BigInt(size))
parentPort!.postMessage({ fd, size })

parentPort!.on('message', (m: { id: number; text?: string; close?: boolean }) => {
  if (m.close) {
    closeSync(fd)
    parentPort!.close()
    return
  }
  const now = performance.timeOrigin + performance.now()
  const at = Math.floor(now)
  const data = Buffer.from(m.text!.replaceAll('\u0001', at.toString(36)), 'latin1')
  try {
    const written = writeSync(fd, data)
    if (written !== data.length) throw Object.assign(new Error(`write cut short (${written} of ${data.length} bytes)`), { code: 'ENOSPC' })
    size += written
    Atomics.store(state, 0, BigInt(size))
    Atomics.add(state, 1, 1n)
    Atomics.notify(state, 1)
    parentPort!.postMessage({ id: m.id, at, began: now, end: size })
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
