import { parentPort } from 'node:worker_threads'
import { receiver } from './mx.ts'

/**
 * The kill row's receiving MX on a thread of its own (mx-thread.ts): its 250s are timed by
 * an event loop the kill -9 driver does not share, so a kill is never more likely to come
 * right after a 250 than at any other moment.
 */
const rx = await receiver({ onDelivered: (d) => parentPort!.postMessage({ delivery: d }) })
parentPort!.postMessage({ port: rx.port })
parentPort!.on('message', (m: { close?: boolean }) => {
  if (m.close) void rx.close().then(() => parentPort!.close())
})
