import { verify as verifySignature, type KeyObject } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { GENESIS, checkpointName, checkpointPayload, recordHash, recordLink, type Checkpoint } from './record.ts'
import { checkpointDays, listSegments, readEnd, readLines } from './segments.ts'

export interface VerifyProblem {
  /** The first record that is not as written (or the checkpoint that fails). */
  seq: number
  file: string
  line: number
  reason: string
}

export interface VerifyResult {
  ok: boolean
  records: number
  firstSeq: number | undefined
  lastSeq: number | undefined
  checkpoints: number
  /** Highest sequence number a valid signed checkpoint vouches for. */
  coveredTo: number
  problem: VerifyProblem | undefined
  notes: string[]
}

export interface VerifyOptions {
  /** First and last UTC day (YYYY-MM-DD) to check; default all. */
  from?: string
  to?: string
  onProgress?: (records: number) => void
}

/**
 * Checks the trail in `dir` (S6): sequence numbers without gaps, every
 * record's `prev` equal to the hash of the record before it, every checkpoint
 * signed by `publicKey` and equal to the chain at its sequence number, and no
 * signed checkpoint beyond the end of the records (truncation). Stops at the
 * first problem and names the record and where it is.
 */
export async function verifyTrail(dir: string, publicKey: KeyObject, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const all = await listSegments(dir)
  const segments = all.filter((s) => (!opts.from || s.day >= opts.from) && (!opts.to || s.day <= opts.to))
  const result: VerifyResult = { ok: true, records: 0, firstSeq: undefined, lastSeq: undefined, checkpoints: 0, coveredTo: 0, problem: undefined, notes: [] }
  const fail = (problem: VerifyProblem): VerifyResult => ({ ...result, ok: false, problem })

  // Checkpoints of the days in range and after (a checkpoint just past midnight covers the day
  // before, and its day may have no records of its own).
  const checkpoints = new Map<number, Checkpoint & { file: string; line: number }>()
  for (const day of await checkpointDays(dir, opts.from)) {
    const file = join(dir, checkpointName(day))
    const text = await readFile(file, 'utf8').catch(() => '')
    let n = 0
    for (const line of text.split('\n')) {
      n++
      if (!line) continue
      let c: Checkpoint
      try {
        c = JSON.parse(line) as Checkpoint
      } catch {
        return fail({ seq: 0, file, line: n, reason: 'checkpoint line is not JSON' })
      }
      if (!verifySignature('sha256', checkpointPayload(c), publicKey, Buffer.from(String(c.sig), 'base64'))) {
        return fail({ seq: c.seq, file, line: n, reason: `checkpoint for seq ${c.seq} has an invalid signature (altered, or not made by this box's key)` })
      }
      checkpoints.set(c.seq, { ...c, file, line: n })
    }
  }

  let expected: number | undefined
  let prevHash: string | undefined
  let prevAt = { file: '', line: 0 }
  let lastCheckpoint = 0
  type Mismatch = { seq: number; file: string; line: number; cp: Checkpoint; after: number }
  let mismatch: Mismatch | undefined
  const changed = (seq: number, at: { file: string; line: number }): VerifyProblem => ({
    seq,
    ...at,
    reason: `record ${seq} does not hash to the link stored in record ${seq + 1}: it was changed`,
  })
  const rewritten = (m: Mismatch): VerifyProblem => ({
    seq: m.after + 1,
    file: m.file,
    line: m.line,
    reason: `records after seq ${m.after} up to ${m.seq} differ from what the checkpoint signed at ${m.cp.time} (rewritten and re-chained)`,
  })
  const first = segments[0]
  if (first) {
    const before = all[all.indexOf(first) - 1]
    if (before) {
      const end = await readEnd(dir, before.day)
      if (end) ({ seq: expected, hash: prevHash } = { seq: end.seq + 1, hash: end.hash })
      else result.notes.push(`no end file for ${before.day}: the first record checked is taken as given`)
    }
    // Otherwise the first record sets the start: seq 1 with a genesis link, or later if retention removed older days.
  }

  for (const [si, seg] of segments.entries()) {
    for await (const l of readLines(seg)) {
      if (!l.complete) {
        if (si === segments.length - 1) result.notes.push(`last line of ${seg.file} is incomplete (being written, or cut short by a crash)`)
        else return fail({ seq: expected ?? 0, file: seg.file, line: l.number, reason: 'incomplete line inside the trail' })
        break
      }
      const link = recordLink(l.text)
      if (!link) return fail({ seq: expected ?? 0, file: seg.file, line: l.number, reason: 'line is not an audit record' })
      if (expected === undefined) {
        if (link.seq !== 1 || link.prev !== GENESIS) result.notes.push(`trail starts at seq ${link.seq}: earlier records are not in the checked range`)
        expected = link.seq
        prevHash = link.seq === 1 ? GENESIS : link.prev
        result.firstSeq = link.seq
      }
      result.firstSeq ??= link.seq
      if (link.seq > expected) {
        return fail({
          seq: expected,
          file: seg.file,
          line: l.number,
          reason: `record${link.seq - expected > 1 ? `s ${expected}–${link.seq - 1}` : ` ${expected}`} missing before this line (deleted or moved)`,
        })
      }
      if (link.seq < expected)
        return fail({
          seq: link.seq,
          file: seg.file,
          line: l.number,
          reason: `seq ${link.seq} where ${expected} was expected (record inserted, duplicated or moved)`,
        })
      if (mismatch) {
        // The record after a mismatching checkpoint tells an edit of that one record from a rewrite.
        return fail(link.prev === mismatch.cp.head ? changed(mismatch.seq, mismatch) : rewritten(mismatch))
      }
      if (link.prev !== prevHash) {
        return fail(changed(link.seq - 1, prevAt))
      }
      const hash = recordHash(l.text)
      const cp = checkpoints.get(link.seq)
      if (cp) {
        if (cp.head !== hash) mismatch = { seq: link.seq, file: seg.file, line: l.number, cp, after: lastCheckpoint }
        else {
          lastCheckpoint = link.seq
          result.checkpoints++
        }
      }
      prevHash = hash
      prevAt = { file: seg.file, line: l.number }
      expected = link.seq + 1
      result.lastSeq = link.seq
      if (++result.records % 1_000_000 === 0) opts.onProgress?.(result.records)
    }
  }

  if (mismatch) return fail(rewritten(mismatch))
  result.coveredTo = lastCheckpoint
  const rangeIsOpen = !opts.to || !all.some((s) => s.day > opts.to!)
  if (rangeIsOpen) {
    const beyond = [...checkpoints.values()].filter((c) => c.seq > (result.lastSeq ?? 0)).sort((a, b) => a.seq - b.seq)[0]
    if (beyond) {
      return fail({
        seq: (result.lastSeq ?? 0) + 1,
        file: beyond.file,
        line: beyond.line,
        reason:
          `the trail ends at seq ${result.lastSeq ?? 0} but a checkpoint signed at ${beyond.time} covers seq ${beyond.seq}: records ` +
          `${(result.lastSeq ?? 0) + 1}–${beyond.seq} were removed`,
      })
    }
  }
  if (result.lastSeq !== undefined && lastCheckpoint < result.lastSeq)
    result.notes.push(`records ${lastCheckpoint + 1}–${result.lastSeq} are after the last signed checkpoint (the next checkpoint will cover them)`)
  return result
}
