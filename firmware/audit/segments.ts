import { open, readFile, readdir, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { StringDecoder } from 'node:string_decoder'
import { createGunzip } from 'node:zlib'
import { boxError } from '../box-errors.ts'
import { CHECKPOINTS, SEGMENT, endName, recordHash, recordLink } from './record.ts'

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

/** A day's last sequence number and hash: its `.end` file, or (if that was removed) the day read to its last record. */
export async function dayEnd(dir: string, day: string): Promise<{ seq: number; hash: string }> {
  const end = await readEnd(dir, day)
  if (end) return end
  const seg = (await listSegments(dir)).find((s) => s.day === day)
  let line: string | undefined
  if (seg) for await (const l of readLines(seg)) if (l.complete) line = l.text
  const link = line === undefined ? undefined : recordLink(line)
  if (!link) throw boxError('EAUDIT_UNREADABLE', `audit segment for ${day} has no record to end on and no end file`)
  return { seq: link.seq, hash: recordHash(line!) }
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

/** The last complete line of a file and the length of any partial line after it (read backwards from `size`). */
export async function lastLine(file: string, size: number): Promise<{ line: string | undefined; tornBytes: number }> {
  const fh = await open(file, 'r')
  try {
    let buf = Buffer.alloc(0)
    let pos = size
    let tornBytes: number | undefined
    while (pos > 0) {
      const n = Math.min(65536, pos)
      pos -= n
      const chunk = Buffer.alloc(n)
      await fh.read(chunk, 0, n, pos)
      buf = Buffer.concat([chunk, buf])
      if (tornBytes === undefined) {
        const nl = buf.lastIndexOf(0x0a)
        if (nl < 0) continue
        tornBytes = buf.length - nl - 1
      }
      const end = buf.length - tornBytes - 1
      const start = end > 0 ? buf.lastIndexOf(0x0a, end - 1) : -1
      if (start >= 0) return { line: buf.subarray(start + 1, end).toString('utf8'), tornBytes }
    }
    if (tornBytes === undefined) return { line: undefined, tornBytes: size }
    const end = buf.length - tornBytes - 1
    return { line: end > 0 ? buf.subarray(0, end).toString('utf8') : undefined, tornBytes }
  } finally {
    await fh.close()
  }
}
