import { createReadStream } from 'node:fs'
import { readdir, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { createGzip } from 'node:zlib'
import { fileSink, replaceFile, writeFileAtomic } from '../../hal/storage/files.ts'
import type { Logger } from '../log.ts'
import { endName, filterName, segmentName } from './record.ts'
import { buildDayFilter } from './search.ts'
import { dayEnd, listSegments, readEnd } from './segments.ts'

/*
 * What happens to a day of the trail once it is over (S6, S13): its end is
 * written down, its search filter built, it is compressed, and after the
 * retention period it is deleted. The trail's writer calls these beside
 * appending; none of them touches the segment being written.
 */

/**
 * Finishes a day: the `.end` file (so the next day can be verified without
 * reading this one), the search filter, then the gzip copy written atomically
 * before the plain file is removed — at every moment one complete copy exists.
 */
export async function finishDay(dir: string, day: string): Promise<void> {
  const plain = join(dir, segmentName(day))
  if (!(await readEnd(dir, day))) writeFileAtomic(join(dir, endName(day)), JSON.stringify(await dayEnd(dir, day)))
  await buildDayFilter(dir, { day, file: plain, gz: false })
  await replaceFile(`${plain}.gz`, (fh) => pipeline(createReadStream(plain), createGzip({ level: 6 }), fileSink(fh)))
  await unlink(plain)
}

/**
 * Deletes every file of the days before `cutoff` (retention, `audit.retentionDays`),
 * never the day being written. Returns the days removed and the bytes the trail
 * still takes (for the disk budget alarm).
 */
export async function removeExpired(dir: string, cutoff: string, current: string | undefined): Promise<{ removed: string[]; bytes: number }> {
  const removed = new Set<string>()
  let bytes = 0
  for (const name of await readdir(dir)) {
    const day = /(\d{4}-\d{2}-\d{2})/.exec(name)?.[1]
    if (day && day < cutoff && day !== current) {
      await unlink(join(dir, name)).catch(() => {})
      removed.add(day)
    } else {
      bytes += (await stat(join(dir, name)).catch(() => ({ size: 0 }))).size
    }
  }
  return { removed: [...removed].sort(), bytes }
}

/**
 * Search filters for finished days that have none (a trail from before filters, or a
 * crash mid-build). Never for the day being written — `current()` is asked at each
 * step, as the writer may start a day meanwhile — nor for the newest segment: a
 * filter of part of a day would hide the rest of it from every search.
 */
export async function buildMissingFilters(dir: string, current: () => string | undefined, stopping: () => boolean, log: Logger): Promise<void> {
  const names = new Set(await readdir(dir))
  const segments = await listSegments(dir)
  for (const seg of segments.slice(0, -1)) {
    if (stopping()) return
    if (seg.day === current() || names.has(filterName(seg.day))) continue
    await buildDayFilter(dir, seg, stopping).catch((err: Error) =>
      log.warn({ day: seg.day, err: err.message }, 'could not build the search filter of an audit day'),
    )
  }
}
