import { createHash } from 'node:crypto'

/**
 * The audit trail's on-disk format (S6). Everything an auditor needs to check
 * it with standard tools is defined here, and VERIFY.md in an export bundle
 * describes the same rules in words.
 *
 * - A record is one line of JSON, starting `{"seq":N,"prev":"<64 hex>",`:
 *   `seq` counts from 1 without gaps over the box's life; `prev` is the
 *   SHA-256 (hex) of the previous record's line, without its newline. The first
 *   record's `prev` is 64 zeros. Changing, removing, inserting or reordering a
 *   line breaks the chain at that point.
 * - Records of one UTC day are in `trail-YYYY-MM-DD.jsonl` (gzip-compressed to
 *   `.jsonl.gz` once the day is over); `trail-YYYY-MM-DD.end` then holds the
 *   day's last sequence number and hash, so the next day can be checked
 *   without reading this one.
 * - Checkpoints in `checkpoints-YYYY-MM-DD.jsonl`: `{"seq","head","time","sig"}`
 *   where `head` is the hash of record `seq` and `sig` an ECDSA P-256 SHA-256
 *   signature (DER, base64) by the HSM key `audit/checkpoint-signing` over
 *   `checkpointPayload()`. A checkpoint fixes every record up to `seq`: even a
 *   rewritten, re-hashed trail cannot match it, and a truncated one lacks it.
 */

export const GENESIS = '0'.repeat(64)
/** The checkpoint key's public half, exported beside the trail for verifiers. */
export const PUBLIC_KEY_FILE = 'checkpoint-key.pem'

export interface Checkpoint {
  seq: number
  head: string
  time: string
  sig: string
}

export function recordHash(line: string | Buffer): string {
  return createHash('sha256').update(line).digest('hex')
}

/** The exact bytes a checkpoint signature covers. */
export function checkpointPayload(c: Pick<Checkpoint, 'seq' | 'head' | 'time'>): Buffer {
  return Buffer.from(`statement-gateway audit checkpoint v1\nseq=${c.seq}\nhead=${c.head}\ntime=${c.time}\n`)
}

/** Builds a record line; `fields` must not contain seq or prev. S2, S6: the sequence number and the previous hash make a gap or an edit show. */
export function recordLine(seq: number, prev: string, fields: Record<string, unknown>): string {
  const body = JSON.stringify(fields)
  return `{"seq":${seq},"prev":"${prev}"${body.length > 2 ? ',' : ''}${body.slice(1)}`
}

const HEAD = /^\{"seq":(\d{1,15}),"prev":"([0-9a-f]{64})"/

/** Sequence number and link of a record line, without parsing the rest; undefined if the line is not a record. */
export function recordLink(line: string): { seq: number; prev: string } | undefined {
  const m = HEAD.exec(line)
  return m ? { seq: Number(m[1]), prev: m[2]! } : undefined
}

/** UTC day of a time, as segment files name it. */
export function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10)
}

export const segmentName = (day: string) => `trail-${day}.jsonl`
export const checkpointName = (day: string) => `checkpoints-${day}.jsonl`
export const endName = (day: string) => `trail-${day}.end`
/** A finished day's search filter (bloom.ts): beside the trail, not part of it. */
export const filterName = (day: string) => `trail-${day}.bloom`
export const SEGMENT = /^trail-(\d{4}-\d{2}-\d{2})\.jsonl(\.gz)?$/
export const CHECKPOINTS = /^checkpoints-(\d{4}-\d{2}-\d{2})\.jsonl$/
