import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from '../../hal/storage/files.ts'
import { BloomFilter, recordKeys } from './bloom.ts'
import { dayOf, filterName } from './record.ts'
import { listSegments, readLines, type Segment } from './segments.ts'

export interface AuditQuery {
  /** Time range, ms since the epoch (inclusive). */
  from?: number
  to?: number
  type?: string
  /** Queue id the box gave the mail. */
  id?: string
  /** The firm's statement id (X-Statement-ID). */
  statementId?: string
  /** HMAC of a recipient address (`recipientHash`), never the address itself. */
  recipientHash?: string
  limit?: number
}

export type AuditRecord = Record<string, unknown> & { seq: number; time: string; type: string }

/**
 * Records matching every given criterion, oldest first (S6: the admin page
 * and reports build on it). Only the days in the time range are read, a
 * finished day whose filter rules out the id, statement id or recipient
 * sought is not read at all, and a line is parsed only when its text
 * contains the values sought, so a scan runs at close to the speed of
 * reading the segments.
 */
export async function* searchTrail(dir: string, q: AuditQuery): AsyncGenerator<AuditRecord> {
  if (q.statementId === undefined) {
    yield* scan(dir, q)
    return
  }
  // S6: a statement's whole history. The firm's id is on the record that accepted the mail;
  // the rest of the mail's life (signing, queueing, attempts, final state) carries the queue
  // id, and an archive copy the queue id with "-a". Those ids are looked up from there on.
  const ids = new Set<string>()
  let from: number | undefined
  for await (const r of scan(dir, { from: q.from, to: q.to, statementId: q.statementId })) {
    if (typeof r.id !== 'string') continue
    ids.add(r.id)
    ids.add(`${r.id}-a`)
    from ??= Date.parse(r.time)
  }
  if (from === undefined) return
  let found = 0
  for await (const r of scan(dir, { ...q, statementId: undefined, from, anyId: ids })) {
    yield r
    if (q.limit && ++found >= q.limit) return
  }
}

async function* scan(dir: string, q: AuditQuery & { anyId?: ReadonlySet<string> }): AsyncGenerator<AuditRecord> {
  const fromDay = q.from === undefined ? undefined : dayOf(q.from)
  const toDay = q.to === undefined ? undefined : dayOf(q.to)
  const needles = [
    q.id && JSON.stringify(q.id),
    q.statementId && JSON.stringify(q.statementId),
    q.recipientHash && `"${q.recipientHash}"`,
    q.type && `"type":${JSON.stringify(q.type)}`,
  ].filter((n): n is string => Boolean(n))
  const anyIdNeedles = q.anyId && [...q.anyId].map((id) => JSON.stringify(id))
  const keys = [q.id && `i:${q.id}`, q.statementId && `s:${q.statementId}`, q.recipientHash && `r:${q.recipientHash}`].filter((k): k is string => Boolean(k))
  let found = 0
  for (const seg of await listSegments(dir)) {
    if ((fromDay && seg.day < fromDay) || (toDay && seg.day > toDay)) continue
    if (keys.length || q.anyId) {
      // A finished day's filter says for certain when a day cannot hold the mail sought.
      const filter = await readDayFilter(dir, seg.day)
      if (filter && !keys.every((k) => filter.has(k))) continue
      if (filter && q.anyId && ![...q.anyId].some((id) => filter.has(`i:${id}`))) continue
    }
    for await (const l of readLines(seg)) {
      if (!l.complete || !needles.every((n) => l.text.includes(n))) continue
      if (anyIdNeedles && !anyIdNeedles.some((n) => l.text.includes(n))) continue
      const r = JSON.parse(l.text) as AuditRecord
      const t = Date.parse(r.time)
      if ((q.from !== undefined && t < q.from) || (q.to !== undefined && t > q.to)) continue
      if (q.type && r.type !== q.type) continue
      if (q.id && r.id !== q.id) continue
      if (q.statementId && r.statementId !== q.statementId) continue
      if (q.anyId && !(typeof r.id === 'string' && q.anyId.has(r.id))) continue
      if (q.recipientHash && !(Array.isArray(r.recipients) && r.recipients.some((x: { h?: string }) => x.h === q.recipientHash))) continue
      yield r
      if (q.limit && ++found >= q.limit) return
    }
  }
}

/** The search filter of a finished day, if it has a sound one. */
export async function readDayFilter(dir: string, day: string): Promise<BloomFilter | undefined> {
  const buf = await readFile(join(dir, filterName(day))).catch(() => undefined)
  return buf && BloomFilter.parse(buf)
}

/**
 * Builds a finished day's search filter from its segment and writes it
 * beside the trail (atomically; a crash leaves none, and the day is then
 * simply read by searches). Sized from the segment's bytes: at least one
 * key per 150 bytes of records, more than records ever carry. Returns the
 * number of keys added; `abandon` stops early without writing a filter.
 */
export async function buildDayFilter(dir: string, seg: Segment, abandon: () => boolean = () => false): Promise<number> {
  const bytes = (await stat(seg.file)).size * (seg.gz ? 8 : 1)
  const filter = BloomFilter.forKeys(Math.ceil(bytes / 150))
  let keys = 0
  for await (const l of readLines(seg)) {
    if (!l.complete) continue
    if (l.number % 10_000 === 0 && abandon()) return keys // shutting down: no filter yet, searches read the day
    let r: Record<string, unknown>
    try {
      r = JSON.parse(l.text) as Record<string, unknown>
    } catch {
      continue // verification reports a bad line; the filter only has to cover the good ones
    }
    for (const k of recordKeys(r)) {
      filter.add(k)
      keys++
    }
  }
  writeFileAtomic(join(dir, filterName(seg.day)), filter.serialize())
  return keys
}
