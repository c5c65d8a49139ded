import { randomBytes } from 'node:crypto'

/**
 * Queue ids and record file names. The spool owns both: an id names a mail
 * from its 250 to its final state, in the spool, the journal, the audit trail
 * and the notices to the firm.
 */

/** 72 random bits, URL-safe base64 (12 characters). */
export function newQueueId(): string {
  return randomBytes(9).toString('base64url')
}

/** Record file name: the id, epoch and creation time, so a restart can index without reading files. */
export const recordName = (e: { id: string; epoch: string; created: number }) => `${e.id}~${e.epoch}~${e.created.toString(36)}.rec`

/** The parts of a record file name, or undefined for any other name. */
export function parseRecordName(name: string): { id: string; epoch: string; created: number } | undefined {
  const m = /^([A-Za-z0-9_-]+)~([0-9A-Za-z]+)~([0-9a-z]+)\.rec$/.exec(name)
  return m ? { id: m[1]!, epoch: m[2]!, created: parseInt(m[3]!, 36) } : undefined
}

/** 16 shard directories: few enough that concurrent writers share directory fsyncs, enough to keep directories small. */
export const shardOf = (id: string) => (id.charCodeAt(0) & 15).toString(16)
