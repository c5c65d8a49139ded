import { parentPort, workerData } from 'node:worker_threads'
import { goodClient, type ListenerName, type Target } from '../helpers/lifecycle.ts'

/**
 * The good client of one listener, on a thread of its own (good-thread.ts): every `everyMs` it
 * opens a connection and does what an honest client does (test/helpers/lifecycle.ts
 * `goodClient`), timing it on this thread's clock, so the flood generator's busy event loop in
 * the suite's main thread is not in its figures.
 */
const w = workerData as {
  ports: Target['ports']
  tls: Target['tls']
  account: Target['account']
  listener: ListenerName
  localAddress?: string
  everyMs: number
}
const target: Target = { ports: w.ports, tls: w.tls, account: w.account, alive: () => true }
const ms: number[] = []
let failed = 0
let stopped = false
parentPort!.once('message', () => (stopped = true))
while (!stopped) {
  const tick = new Promise((r) => setTimeout(r, w.everyMs))
  const t0 = performance.now()
  const answer = await goodClient(target, w.listener, w.localAddress).catch(() => 'failed')
  if (answer === '250') ms.push(Math.round(performance.now() - t0))
  else failed++
  await tick
}
parentPort!.postMessage({ ms, failed })
