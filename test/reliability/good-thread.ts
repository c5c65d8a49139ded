import { Worker } from 'node:worker_threads'
import type { ListenerName, Target } from '../helpers/lifecycle.ts'

/** A good client of `listener` every `everyMs` on its own thread (good-worker.ts) until `stop()`: the latencies of those answered 250, and the failures. */
export function goodClientThread(box: Target, listener: ListenerName, everyMs: number, localAddress?: string) {
  const worker = new Worker(new URL('./good-worker.ts', import.meta.url), {
    workerData: { ports: box.ports, tls: box.tls, account: box.account, listener, localAddress, everyMs },
  })
  const result = new Promise<{ ms: number[]; failed: number }>((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
  })
  return {
    stop: async () => {
      worker.postMessage('stop')
      const r = await result
      await worker.terminate()
      return r
    },
  }
}
