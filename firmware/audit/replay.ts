import { listSegments, readEnd, readLines, type Segment } from './segments.ts'
import { recordLink } from './record.ts'

/**
 * The trail's records after sequence number `after`, oldest first, as their
 * lines (S6: views of the trail such as the reports ledger are rebuilt and
 * caught up from it). Days that end at or before `after` are skipped by their
 * end file without being read; a line still being written is not returned.
 */
export async function* recordsAfter(dir: string, after: number): AsyncGenerator<{ seq: number; line: string }> {
  const segments = await listSegments(dir)
  let from = 0
  // The first day that may hold record after+1: the one after the last day ending at or before it.
  for (let i = segments.length - 2; i >= 0; i--) {
    const end = await readEnd(dir, segments[i]!.day)
    if (end && end.seq <= after) {
      from = i + 1
      break
    }
  }
  yield* completeRecords(segments.slice(from), after)
}

/** The trail's complete records from the UTC day `day` on (a bounded look back: the days before are not read). */
export async function* recordsFromDay(dir: string, day: string): AsyncGenerator<{ seq: number; line: string }> {
  yield* completeRecords(
    (await listSegments(dir)).filter((s) => s.day >= day),
    0,
  )
}

/** The whole records of these segments, in order, after sequence number `after`. */
async function* completeRecords(segments: readonly Segment[], after: number): AsyncGenerator<{ seq: number; line: string }> {
  for (const seg of segments) {
    for await (const l of readLines(seg)) {
      if (!l.complete) continue
      const link = recordLink(l.text)
      if (link && link.seq > after) yield { seq: link.seq, line: l.text }
    }
  }
}
