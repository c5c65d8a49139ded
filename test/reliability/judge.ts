/**
 * The reliability suite's verdicts (#33), apart from the runs that feed them so
 * that judge.test.ts can hold them to synthetic records: a figure printed is a
 * figure judged, against the target the issue and the README name.
 */

/** M10, S12: at most one statement delivered twice per 1,000 accepted. */
export const DUPLICATES_PER_ACCEPTED = 1 / 1000
/** #33: a receiver's 250 is in the journal within this many ms (p99). */
export const WINDOW_P99_MS = 20
/**
 * A kill this close before the receiver's 250 (ms, by two clocks: the suite's and the receiver
 * thread's, which stamps after its own work) is that delivery's kill: the box was dead or dying
 * when the 250 came, and the journal line after the restart is not its window.
 */
export const KILL_BEFORE_250_MS = 5

/** One statement the receiver answered 250 to: its queue id (from its Received line) and the receiver's clock then. */
export interface Delivery {
  statement: string
  queueId: string | undefined
  at: number
}

/** What kill -9 under load left: the clients' 250s, the receiver's mails, the journal's lines and the kills' times. */
export interface KillRecords {
  /** Statement ids whose client read a 250. */
  accepted: ReadonlySet<string>
  deliveries: readonly Delivery[]
  /** Per queue id, the times its journal lines were written (every line seen, across the runs). */
  journal: ReadonlyMap<string, readonly number[]>
  /** When each kill -9 was sent, in order. */
  kills: readonly number[]
  /**
   * The journal's own writes, by stamp: how long the write of the group with that stamp took to be
   * durable (ms) — what a line's stamp leaves out. A line whose write is not known is given the longest.
   */
  writes?: ReadonlyMap<number, number>
}

export interface KillVerdict {
  accepted: number
  lost: number
  duplicates: number
  duplicateLimit: number
  /** Statements the receiver got whose client never read a 250 (a resubmitting system sends these twice). */
  withoutA250: number
  window: { p50: number; p99: number; max: number; count: number; interrupted: number; unmatched: number }
  /** The same to the line's write (its stamp): the line is in the file, where a kill -9 cannot take it back. */
  written: { p50: number; p99: number; max: number; interrupted: number }
  /** The journal's writes, stamp → durable (each delivery's window runs to its own line's write's end). */
  writes: { p99: number; max: number; unknown: number }
  ok: boolean
  why: string[]
  /** For each statement delivered twice: its deliveries, its journal lines and the kills near them (times relative to the first delivery). */
  duplicateDetails: string[]
}

const pct = (sorted: readonly number[], q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? 0

/**
 * The 250 → journal window from the receiver's side: for each 250 the receiver gave, the
 * first journal line of that mail written at or after it, to that line being durable (its
 * stamp + its time to durable: what a power cut needs) or, `to: 'written'`, to its write
 * (its stamp: what a kill -9 needs); a delivery whose line was not there before the next
 * kill counts until that kill — after a kill those are the ones sent again.
 */
export function windows(
  r: Pick<KillRecords, 'deliveries' | 'journal' | 'kills' | 'writes'>,
  to: 'durable' | 'written' = 'durable',
): KillVerdict['window'] & { values: number[]; unknownWrites: number } {
  const values: number[] = []
  let interrupted = 0
  let unmatched = 0
  let unknownWrites = 0
  const longest = Math.max(0, ...(r.writes?.values() ?? []))
  const durable = (stamp: number) => {
    if (to === 'written') return stamp
    const ms = r.writes?.get(stamp)
    if (ms === undefined) unknownWrites++
    return stamp + (ms ?? longest)
  }
  for (const d of r.deliveries) {
    if (!d.queueId) {
      unmatched++
      continue
    }
    const killAfter = r.kills.find((k) => k >= d.at - KILL_BEFORE_250_MS)
    const line = (r.journal.get(d.queueId) ?? []).filter((s) => s >= d.at).reduce((a, b) => Math.min(a, b), Infinity)
    if (line !== Infinity && (killAfter === undefined || durable(line) <= killAfter)) values.push(durable(line) - d.at)
    else if (killAfter !== undefined) {
      values.push(Math.max(0, killAfter - d.at))
      interrupted++
    } else unmatched++
  }
  const sorted = [...values].sort((a, b) => a - b)
  return { values, unknownWrites, p50: pct(sorted, 0.5), p99: pct(sorted, 0.99), max: sorted.at(-1) ?? 0, count: sorted.length, interrupted, unmatched }
}

/** The kill -9 row: lost 0, duplicates ≤ 1/1,000 accepted, window p99 ≤ 20 ms with the interrupted ones in it. */
export function judgeKill(r: KillRecords): KillVerdict {
  const got = new Map<string, number>()
  for (const d of r.deliveries) got.set(d.statement, (got.get(d.statement) ?? 0) + 1)
  const lost = [...r.accepted].filter((id) => !got.has(id)).length
  const duplicates = [...got.values()].filter((n) => n > 1).length
  const withoutA250 = [...got.keys()].filter((id) => !r.accepted.has(id)).length
  const duplicateLimit = Math.floor(r.accepted.size * DUPLICATES_PER_ACCEPTED)
  const window = windows(r)
  const { p50, p99, max, interrupted } = windows(r, 'written')
  const written = { p50, p99, max, interrupted }
  const sortedWrites = [...(r.writes?.values() ?? [])].sort((a, b) => a - b)
  const writes = { p99: pct(sortedWrites, 0.99), max: sortedWrites.at(-1) ?? 0, unknown: window.unknownWrites }
  const why: string[] = []
  if (lost > 0) why.push(`${lost} accepted mail(s) never delivered`)
  if (duplicates > duplicateLimit) why.push(`${duplicates} delivered twice, over ${duplicateLimit} (1 per 1,000 of ${r.accepted.size} accepted)`)
  if (window.p99 > WINDOW_P99_MS) why.push(`window p99 ${window.p99.toFixed(1)} ms over ${WINDOW_P99_MS} ms`)
  if (written.p99 > WINDOW_P99_MS) why.push(`window to the line's write p99 ${written.p99.toFixed(1)} ms over ${WINDOW_P99_MS} ms`)
  if (window.unmatched > 0) why.push(`${window.unmatched} delivery(ies) with no journal line and no kill after them`)
  const { values: _values, unknownWrites: _unknown, ...w } = window
  const duplicateDetails = [...got]
    .filter(([, n]) => n > 1)
    .map(([id]) => {
      const ds = r.deliveries.filter((d) => d.statement === id)
      const t0 = ds[0]!.at
      const rel = (t: number) => `${t - t0 >= 0 ? '+' : ''}${t - t0}`
      const lines = [...new Set(ds.map((d) => d.queueId))].map((q) => `${q}: journal ${(q && r.journal.get(q)?.map(rel).join(',')) || 'none'}`)
      const kills = r.kills.filter((k) => k >= t0 - 5000 && k <= ds.at(-1)!.at + 5000).map(rel)
      return `${id}: received ${ds.map((d) => `${rel(d.at)} (${d.queueId})`).join(', ')}; ${lines.join('; ')}; kills ${kills.join(',') || 'none'}`
    })
  return { accepted: r.accepted.size, lost, duplicates, duplicateLimit, withoutA250, window: w, written, writes, ok: why.length === 0, why, duplicateDetails }
}

/** The full-disk row: the operators' alarm must come before the first client is turned away with 452. */
export function judgeDiskAlarm(alarmAt: number | undefined, first452At: number | undefined): { ok: boolean; text: string } {
  if (first452At === undefined) return { ok: false, text: 'no 452 came: the disk never filled' }
  if (alarmAt === undefined) return { ok: false, text: 'no alarm before or after the first 452' }
  const lead = (first452At - alarmAt) / 1000
  return lead > 0
    ? { ok: true, text: `alarm ${lead.toFixed(2)} s before the first 452` }
    : { ok: false, text: `alarm ${(-lead).toFixed(2)} s AFTER the first 452` }
}

/** The HSM row: log and status both say unavailable ≤ 1 s after the token goes and ready ≤ 2 s after it is back. */
export interface HsmTimes {
  goneAt: number
  backAt: number
  logUnavailableAt: number | undefined
  logReadyAt: number | undefined
  statusUnavailableAt: number | undefined
  statusReadyAt: number | undefined
  /** Status polls that answered `connected` beside an error of their own probe. */
  connectedWithError: number
}

export function judgeHsm(h: HsmTimes): { ok: boolean; text: string } {
  const after = (t: number | undefined, from: number) => (t === undefined || t < from ? Infinity : (t - from) / 1000)
  const lu = after(h.logUnavailableAt, h.goneAt)
  const su = after(h.statusUnavailableAt, h.goneAt)
  const lr = after(h.logReadyAt, h.backAt)
  const sr = after(h.statusReadyAt, h.backAt)
  const s = (n: number) => (n === Infinity ? 'never' : `+${n.toFixed(2)} s`)
  const ok = lu <= 1 && su <= 1 && lr <= 2 && sr <= 2 && h.connectedWithError === 0
  return {
    ok,
    text:
      `unavailable: log ${s(lu)}, status ${s(su)} (≤ 1 s); ready: log ${s(lr)}, status ${s(sr)} (≤ 2 s); ` +
      `status said connected beside a failed probe ${h.connectedWithError} time(s)`,
  }
}

/** Worst of several runs of a figure: the largest (or, for `low`, the smallest). */
export function worst(values: readonly number[], low = false): number {
  return low ? Math.min(...values) : Math.max(...values)
}
