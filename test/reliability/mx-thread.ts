import { Worker } from 'node:worker_threads'
import type { Delivery } from './judge.ts'

/** A receiving MX that accepts everything, run on its own thread (mx-worker.ts); its deliveries arrive here. */
export async function receiverThread(): Promise<{ port: number; deliveries: Delivery[]; got: Map<string, number>; close: () => Promise<void> }> {
  const worker = new Worker(new URL('./mx-worker.ts', import.meta.url))
  const deliveries: Delivery[] = []
  const got = new Map<string, number>()
  const port = await new Promise<number>((resolve, reject) => {
    worker.on('error', reject)
    worker.on('message', (m: { port?: number; delivery?: Delivery }) => {
      if (m.port) resolve(m.port)
      if (m.delivery) {
        deliveries.push(m.delivery)
        got.set(m.delivery.statement, (got.get(m.delivery.statement) ?? 0) + 1)
      }
    })
  })
  return {
    port,
    deliveries,
    got,
    close: () =>
      new Promise<void>((resolve) => {
        worker.once('exit', () => resolve())
        worker.postMessage({ close: true })
      }),
  }
}
