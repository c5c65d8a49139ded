import { getHeapStatistics, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { parentPort, workerData } from 'node:worker_threads'
import { MimeError } from '../mime/header.ts'
import { compilePattern } from '../config/patterns.ts'
import { inspectMessage, type InspectOutcome, type Profile } from './inspect.ts'

/**
 * An inspection worker (firmware/policy/pool.ts): reads and judges one mail
 * at a time off the main event loop. The profiles come with the worker; a
 * job is the message (its bytes transferred, not copied) and its envelope.
 */
export interface Job {
  id: number
  /** The memory holding the mail, moved here for the job and moved back with the result. */
  buffer: ArrayBuffer
  offset: number
  length: number
  account: string | undefined
  mailFrom: string
}

export type JobResult = ({ id: number; ok: true; outcome: InspectOutcome } | { id: number; ok: false; code: string; reason: string }) & { buffer: ArrayBuffer }

// A worker might not collect for a long time, holding megabytes of text and decoded attachments
// it is done with, so it collects after a very large mail, or once what it holds (heap and
// buffers) passes a bound. Not after every mail over 1 MB (as it did): a full collection costs
// 10–20 ms, which for 1 MB mails was a third of the box's CPU per mail (#35). After each very large
// one it still does: 50 clients sending 25 MB each at once must stay within the memory budget
// (test/firmware/submission/memory.test.ts went 2 MB over it when these were left to the bound).
setFlagsFromString('--expose-gc')
const collect = runInNewContext('gc') as () => void
/** What the worker may hold (heap in use and buffers) before a job is followed by a full collection. */
const COLLECT_ABOVE_BYTES = 48 << 20
/** A mail this large is followed by a full collection whatever the worker holds. */
const LARGE_MAIL_BYTES = 8 << 20

const profiles = (workerData as { profiles: Profile[] }).profiles
const compiled = new Map(profiles.map((p) => [p.name, p.patterns.map(compilePattern)]))

// Ready: from now on a job's time budget is the job's alone, not the worker's start-up.
parentPort!.postMessage({ ready: true })

parentPort!.on('message', (job: Job) => {
  let result: JobResult
  const buffer = job.buffer
  try {
    const message = Buffer.from(buffer, job.offset, job.length)
    const outcome = inspectMessage({ message, account: job.account, mailFrom: job.mailFrom }, profiles, (p) => compiled.get(p.name) ?? [])
    result = { id: job.id, ok: true, outcome, buffer }
  } catch (err) {
    result =
      err instanceof MimeError
        ? { id: job.id, ok: false, code: err.code, reason: err.message, buffer }
        : { id: job.id, ok: false, code: 'ETEMPORARY', reason: `inspection failed: ${(err as Error).message}`, buffer }
  }
  parentPort!.postMessage(result, [buffer])
  const held = getHeapStatistics()
  if (job.length > LARGE_MAIL_BYTES || held.used_heap_size + held.external_memory > COLLECT_ABOVE_BYTES) collect()
})
