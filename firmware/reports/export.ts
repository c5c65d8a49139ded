import { writeSync } from 'node:fs'
import type { Writable } from 'node:stream'
import { ROW_FIELDS } from './queries.ts'

export type ExportFormat = 'csv' | 'jsonl'

/** The columns of an export, in order: no content, no subject, no address in clear. */
export const EXPORT_COLUMNS = ROW_FIELDS

const TIMES = new Set<string>(['accepted_at', 'delivered_at', 'bounced_at', 'expired_at', 'removed_at', 'opened_at', 'clicked_at', 'read_at', 'paper_owed_at'])

/**
 * A time as ISO 8601 in the firm's zone with its offset (`2026-11-05T10:00:00.000+08:00`; UTC as +00:00),
 * what a spreadsheet in Taipei shows as it is. The offset is looked up once per quarter hour.
 */
export function localTimeFormatter(timeZone: string): (ms: number) => string {
  const zone = new Intl.DateTimeFormat('en-US', { timeZone, timeZoneName: 'longOffset' })
  const offsets = new Map<number, number>()
  const offsetMinutes = (ms: number) => {
    const key = Math.floor(ms / 900_000)
    let m = offsets.get(key)
    if (m === undefined) {
      const name = zone.formatToParts(ms).find((p) => p.type === 'timeZoneName')?.value ?? 'GMT'
      // "GMT", "GMT+08:00", "GMT-03:30"
      const sign = name[3] === '-' ? -1 : 1
      m = name.length > 3 ? sign * (Number(name.slice(4, 6)) * 60 + Number(name.slice(7, 9))) : 0
      if (offsets.size > 10_000) offsets.clear()
      offsets.set(key, m)
    }
    return m
  }
  return (ms) => {
    const m = offsetMinutes(ms)
    const local = new Date(ms + m * 60_000).toISOString().slice(0, -1)
    const a = Math.abs(m)
    return `${local}${m < 0 ? '-' : '+'}${String(Math.floor(a / 60)).padStart(2, '0')}:${String(a % 60).padStart(2, '0')}`
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

/**
 * Streams rows (value arrays in `EXPORT_COLUMNS` order) to `sink` as CSV (UTF-8
 * with a byte order mark, so Excel reads Chinese right, CRLF lines) or JSON
 * Lines. Lines are encoded into one reused 256 KiB buffer: memory stays flat
 * however many rows. `onRow` is told the count as it grows.
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
  // One function per column, chosen once: a million rows make tens of millions of calls.
  const cells = EXPORT_COLUMNS.map((col): ((v: unknown) => string) => {
    const key = json ? `${JSON.stringify(col)}:` : ''
    const none = json ? `${key}null` : ''
    if (TIMES.has(col)) return (v) => (v == null ? none : json ? `${key}"${time(Number(v))}"` : time(Number(v)))
    if (col === 'bounce_hard') return (v) => (v == null ? none : `${key}${Number(v) === 1}`)
    if (col === 'deferrals') return (v) => (v == null ? none : `${key}${Number(v)}`)
    if (json) return (v) => (v == null ? none : `${key}${JSON.stringify(text(v))}`)
    return (v) => (v == null ? '' : csvField(text(v)))
  })
  const [open, close] = json ? ['{', '}\n'] : ['', '\r\n']
  const buf = Buffer.allocUnsafe(256 * 1024)
  let used = 0
  /** Adds text to the buffer; a full buffer goes to the sink first (the only time this waits). */
  const put = (text: string): Promise<void> | void => {
    if (used + text.length * 3 <= buf.length) {
      used += buf.write(text, used)
      return
    }
    return (async () => {
      if (used) await sink(buf.subarray(0, used))
      used = 0
      if (text.length * 3 > buf.length) await sink(Buffer.from(text))
      else used += buf.write(text, used)
    })()
  }
  if (!json) await put(`\uFEFF${EXPORT_COLUMNS.join(',')}\r\n`)
  let n = 0
  for await (const rows of batches) {
    for (const r of rows) {
      let line = open
      for (let i = 0; i < cells.length; i++) line += (i ? ',' : '') + cells[i]!(r[i])
      const waiting = put(line + close)
      if (waiting) await waiting
    }
    n += rows.length
    onRow(n)
  }
  if (used) await sink(buf.subarray(0, used))
  onRow(n)
  return n
}
