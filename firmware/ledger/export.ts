import { writeSync } from 'node:fs'
import type { Writable } from 'node:stream'
import { PAPER_FIELDS, ROW_FIELDS } from './queries.ts'

export type ExportFormat = 'csv' | 'jsonl'

/** The columns of an export, in order: no content, no subject, no address in clear. */
export const EXPORT_COLUMNS = ROW_FIELDS

const TIMES = new Set<string>(['accepted_at', 'delivered_at', 'bounced_at', 'expired_at', 'removed_at', 'opened_at', 'clicked_at', 'read_at', 'paper_owed_at'])

const PAPER_TIMES = new Set<string>(['submitted_at', 'delivered_at', 'failed_at', 'paper_owed_at'])

/** One line of the paper-owed list as text, in `PAPER_FIELDS` order, times in the firm's zone ('' for none): the CLI's and the admin page's. */
export function paperCells(row: readonly unknown[], local: (ms: number) => string): string[] {
  return PAPER_FIELDS.map((k, i) => {
    const v = row[i]
    return v === null || v === undefined ? '' : PAPER_TIMES.has(k) ? local(Number(v)) : typeof v === 'string' ? v : JSON.stringify(v)
  })
}

/**
 * A time as ISO 8601 in the firm's zone with its offset (`2026-11-05T10:00:00.000+08:00`; UTC as +00:00),
 * what a spreadsheet in Taipei shows as it is. The offset is looked up once per quarter hour.
 */
export function localTimeFormatter(timeZone: string): (ms: number) => string {
  const zone = new Intl.DateTimeFormat('en-US', { timeZone, timeZoneName: 'longOffset' })
  // Per quarter hour (zones move by 15 minutes at most): the offset in ms and the text
  // up to the minute with the offset after it, so each time costs a lookup and some digits.
  const quarters = new Map<number, { offset: number; prefix: string; suffix: string }>()
  const two = (n: number) => (n < 10 ? `0${n}` : `${n}`)
  const quarter = (key: number) => {
    let q = quarters.get(key)
    if (q === undefined) {
      const name = zone.formatToParts(key * 900_000).find((p) => p.type === 'timeZoneName')?.value ?? 'GMT'
      // "GMT", "GMT+08:00", "GMT-03:30"
      const sign = name[3] === '-' ? -1 : 1
      const m = name.length > 3 ? sign * (Number(name.slice(4, 6)) * 60 + Number(name.slice(7, 9))) : 0
      const a = Math.abs(m)
      const local = new Date(key * 900_000 + m * 60_000).toISOString()
      q = { offset: m * 60_000, prefix: local.slice(0, 14), suffix: `${m < 0 ? '-' : '+'}${two(Math.floor(a / 60))}:${two(a % 60)}` }
      if (quarters.size > 10_000) quarters.clear()
      quarters.set(key, q)
    }
    return q
  }
  return (ms) => {
    const q = quarter(Math.floor(ms / 900_000))
    // Within a quarter hour of local time only the minutes, seconds and milliseconds change.
    const within = (ms + q.offset) % 3_600_000
    const min = Math.floor(within / 60_000)
    const sec = Math.floor((within % 60_000) / 1000)
    const milli = within % 1000
    return `${q.prefix}${two(min)}:${two(sec)}.${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}${q.suffix}`
  }
}

/**
 * One CSV field (RFC 4180): quoted when it holds a quote, comma or line break.
 * A field a spreadsheet would run as a formula (= + - @, tab, CR first) gets a
 * leading apostrophe (and so does one that starts with an apostrophe):
 * statement ids come from the firm's mail headers.
 */
export function csvField(v: string): string {
  let s = v
  const c = s.charCodeAt(0)
  // An apostrophe first gets one more, so the guard is always undone the same way (drop one).
  if (c === 0x3d || c === 0x2b || c === 0x2d || c === 0x40 || c === 0x09 || c === 0x0d || c === 0x27) s = `'${s}`
  if (/[",\r\n]/.test(s)) return `"${s.replaceAll('"', '""')}"`
  return s
}

/** Strings that need JSON escaping (most need none, and a scan is cheaper than JSON.stringify for them). */
// A single character class: linear, no backtracking. (Lone surrogates cannot come out of the store's UTF-8.)
const NEEDS_ESCAPE = /["\\\u0000-\u001f]/

/** A value from the store as text (TEXT and INTEGER columns; nothing else is selected). */
function text(v: unknown): string {
  if (typeof v === 'string') return v
  return typeof v === 'number' || typeof v === 'bigint' ? v.toString() : JSON.stringify(v)
}

/** Where an export goes: each call gets bytes it may not keep (the buffer is reused). */
export type ExportSink = (bytes: Buffer) => void | Promise<void>

/** A sink onto a stream (standard output, an HTTP response) that waits for it to drain. */
export function streamSink(out: Writable): ExportSink {
  return (bytes) => {
    if (out.write(Buffer.from(bytes))) return
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        out.off('drain', done)
        out.off('error', done)
        if (err) reject(err)
        else resolve()
      }
      out.on('drain', done)
      out.on('error', done)
    })
  }
}

/** A sink onto a file descriptor, written synchronously: nothing queued in memory. */
export function fileSink(fd: number): ExportSink {
  return (bytes) => {
    for (let off = 0; off < bytes.length;) off += writeSync(fd, bytes, off)
  }
}

/** Bytes written straight into one reused buffer: no line strings to build, join and encode again. */
class Output {
  buf = Buffer.allocUnsafe(1 << 20)
  used = 0
  /** Makes room for `bytes` more, handing what is there to the sink first (the only time this waits). */
  room(bytes: number, sink: ExportSink): Promise<void> | void {
    if (this.used + bytes <= this.buf.length) return
    return (async () => {
      if (this.used) await sink(this.buf.subarray(0, this.used))
      this.used = 0
      if (bytes > this.buf.length) this.buf = Buffer.allocUnsafe(bytes) // a row longer than a megabyte: rare
    })()
  }
  ascii(s: string): void {
    this.used += this.buf.write(s, this.used, 'latin1')
  }
  utf8(s: string): void {
    this.used += this.buf.write(s, this.used, 'utf8')
  }
  byte(b: number): void {
    this.buf[this.used++] = b
  }
  copy(b: Buffer): void {
    this.used += b.copy(this.buf, this.used)
  }
}

/**
 * Streams rows (value arrays in `EXPORT_COLUMNS` order) to `sink` as CSV (UTF-8
 * with a byte order mark, so Excel reads Chinese right, CRLF lines) or JSON
 * Lines. Each value is written straight into one reused 1 MiB buffer: memory
 * stays flat however many rows, and a million rows cost little more than
 * reading them. `onRow` is told the count as it grows.
 */
export async function writeExport(
  batches: AsyncIterable<readonly (readonly unknown[])[]>,
  format: ExportFormat,
  sink: ExportSink,
  timeZone: string,
  onRow: (n: number) => void = () => {},
): Promise<number> {
  const time = localTimeFormatter(timeZone)
  const json = format === 'jsonl'
  const out = new Output()
  const keys = EXPORT_COLUMNS.map((c) => Buffer.from(json ? `${JSON.stringify(c)}:` : ''))
  const NULL = Buffer.from(json ? 'null' : '')
  // One writer per column, chosen once: a million rows make tens of millions of calls.
  const cells = EXPORT_COLUMNS.map((col): ((v: unknown) => void) => {
    if (TIMES.has(col))
      return json
        ? (v) => {
            out.byte(0x22)
            out.ascii(time(Number(v)))
            out.byte(0x22)
          }
        : (v) => out.ascii(time(Number(v)))
    if (col === 'bounce_hard') return (v) => out.ascii(Number(v) === 1 ? 'true' : 'false')
    if (col === 'deferrals') return (v) => out.ascii(String(Number(v)))
    if (json)
      return (v) => {
        const t = text(v)
        if (NEEDS_ESCAPE.test(t)) return out.utf8(JSON.stringify(t))
        out.byte(0x22)
        out.utf8(t)
        out.byte(0x22)
      }
    return (v) => out.utf8(csvField(text(v)))
  })
  /** Bytes a row can take at most: JSON escapes make at most six bytes of a character. */
  const bound = (r: readonly unknown[]) => {
    let b = 64
    for (let i = 0; i < r.length; i++) {
      const v = r[i]
      b += typeof v === 'string' ? v.length * 6 + 48 : 48
    }
    return b
  }
  if (!json) {
    const header = Buffer.from(`\uFEFF${EXPORT_COLUMNS.join(',')}\r\n`)
    await out.room(header.length, sink)
    out.copy(header)
  }
  let n = 0
  for await (const rows of batches) {
    for (const r of rows) {
      const waiting = out.room(bound(r), sink)
      if (waiting) await waiting
      if (json) out.byte(0x7b)
      for (let i = 0; i < cells.length; i++) {
        if (i) out.byte(0x2c)
        out.copy(keys[i]!)
        const v = r[i]
        if (v == null) out.copy(NULL)
        else cells[i]!(v)
      }
      if (json) out.byte(0x7d)
      else out.byte(0x0d)
      out.byte(0x0a)
    }
    n += rows.length
    onRow(n)
  }
  if (out.used) await sink(out.buf.subarray(0, out.used))
  onRow(n)
  return n
}
