import { open, readFile, readdir, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { StringDecoder } from 'node:string_decoder'
import { createGunzip } from 'node:zlib'
import { CHECKPOINTS, SEGMENT, endName } from './record.ts'

export interface Segment {
  day: string
  file: string
  gz: boolean
}

/** The trail's daily segments, oldest first (the plain file wins while one is being compressed). */
export async function listSegments(dir: string): Promise<Segment[]> {
  const byDay = new Map<string, Segment>()
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const m = SEGMENT.exec(name)
    if (!m) continue
    const gz = Boolean(m[2])
    const day = m[1]!
    const known = byDay.get(day)
    if (!known || (known.gz && !gz)) byDay.set(day, { day, file: join(dir, name), gz })
  }
  return [...byDay.values()].sort((a, b) => (a.day < b.day ? -1 : a.day > b.day ? 1 : 0))
}

/** A finished day's last sequence number and hash (its `.end` file), or undefined if there is none. */
export async function readEnd(dir: string, day: string): Promise<{ seq: number; hash: string } | undefined> {
  return readFile(join(dir, endName(day)), 'utf8').then(
    (t) => JSON.parse(t) as { seq: number; hash: string },
    () => undefined,
  )
}

/** Days that have a checkpoint file, oldest first, from `from` on. */
export async function checkpointDays(dir: string, from?: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[]))
    .map((n) => CHECKPOINTS.exec(n)?.[1])
    .filter((d): d is string => d !== undefined && (!from || d >= from))
    .sort()
}

export interface Line {
  text: string
  /** 1-based line number in the segment. */
  number: number
  /** False for a last line without its newline (a write cut short, or one in progress). */
  complete: boolean
}

/**
 * Lines of a segment, decompressing `.gz`, in large chunks (verification of
 * millions of records is bounded by this loop, not by readline's overhead).
 */
export async function* readLines(segment: Pick<Segment, 'file' | 'gz'>, start = 0): AsyncGenerator<Line> {
  // A finished day is compressed while the box runs: a reader that listed the plain file may
  // find it gone, replaced by its .gz (written and synced before the plain file goes).
  let gz = segment.gz
  let fh: FileHandle
  try {
    fh = await open(segment.file, 'r')
  } catch (err) {
    if (gz || (err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    fh = await open(`${segment.file}.gz`, 'r')
    gz = true
  }
  const raw = fh.createReadStream({ highWaterMark: 1 << 20, start: gz ? 0 : start })
  const stream = gz ? raw.pipe(createGunzip({ chunkSize: 1 << 20 })) : raw
  const decoder = new StringDecoder('utf8')
  let rest = ''
  let number = 0
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      const text = rest + decoder.write(chunk)
      let from = 0
      for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', from)) {
        yield { text: text.slice(from, nl), number: ++number, complete: true }
        from = nl + 1
      }
      rest = text.slice(from)
    }
    rest += decoder.end()
    if (rest.length) yield { text: rest, number: ++number, complete: false }
  } finally {
    raw.destroy()
  }
}
