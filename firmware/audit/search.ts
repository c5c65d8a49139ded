import { dayOf } from './record.ts'
import { listSegments, readLines } from './segments.ts'

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
 * and reports build on it). Only the days in the time range are read, and a
 * line is parsed only when its text contains the values sought, so a scan
 * runs at close to the speed of reading the segments.
 */
export async function* searchTrail(dir: string, q: AuditQuery): AsyncGenerator<AuditRecord> {
  const fromDay = q.from === undefined ? undefined : dayOf(q.from)
  const toDay = q.to === undefined ? undefined : dayOf(q.to)
  const needles = [q.id && JSON.stringify(q.id), q.statementId && JSON.stringify(q.statementId), q.recipientHash && `"${q.recipientHash}"`, q.type && `"type":${JSON.stringify(q.type)}`].filter(
    (n): n is string => Boolean(n),
  )
  let found = 0
  for (const seg of await listSegments(dir)) {
    if ((fromDay && seg.day < fromDay) || (toDay && seg.day > toDay)) continue
    for await (const l of readLines(seg)) {
      if (!l.complete || !needles.every((n) => l.text.includes(n))) continue
      const r = JSON.parse(l.text) as AuditRecord
      const t = Date.parse(r.time)
      if ((q.from !== undefined && t < q.from) || (q.to !== undefined && t > q.to)) continue
      if (q.type && r.type !== q.type) continue
      if (q.id && r.id !== q.id) continue
      if (q.statementId && r.statementId !== q.statementId) continue
      if (q.recipientHash && !(Array.isArray(r.recipients) && r.recipients.some((x: { h?: string }) => x.h === q.recipientHash))) continue
      yield r
      if (q.limit && ++found >= q.limit) return
    }
  }
}
