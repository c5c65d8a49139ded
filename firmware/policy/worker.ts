import { parentPort, workerData } from 'node:worker_threads'
import { MimeError } from '../mime/tree.ts'
import { inspectMessage, type InspectOutcome, type Profile } from './inspect.ts'
import { compilePattern } from './patterns.ts'

/**
 * An inspection worker (firmware/policy/pool.ts): reads and judges one mail
 * at a time off the main event loop. The profiles come with the worker; a
 * job is the message (its bytes transferred, not copied) and its envelope.
 */
export interface Job {
  id: number
  message: Uint8Array
  account: string | undefined
  mailFrom: string
}

export type JobResult = { id: number; ok: true; outcome: InspectOutcome } | { id: number; ok: false; code: string; reason: string }

const profiles = (workerData as { profiles: Profile[] }).profiles
const compiled = new Map(profiles.map((p) => [p.name, p.patterns.map(compilePattern)]))

parentPort!.on('message', (job: Job) => {
  let result: JobResult
  try {
    const message = Buffer.from(job.message.buffer, job.message.byteOffset, job.message.byteLength)
    const outcome = inspectMessage({ message, account: job.account, mailFrom: job.mailFrom }, profiles, (p) => compiled.get(p.name) ?? [])
    result = { id: job.id, ok: true, outcome }
  } catch (err) {
    result = err instanceof MimeError ? { id: job.id, ok: false, code: err.code, reason: err.message } : { id: job.id, ok: false, code: 'ETEMPORARY', reason: `inspection failed: ${(err as Error).message}` }
  }
  parentPort!.postMessage(result)
})
