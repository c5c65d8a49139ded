import type { Latency, Run } from './postfix-load.ts'
import type { System } from './postfix-peers.ts'

/*
 * bench/postfix.ts's figures from its runs (medians of each system's own runs
 * at each size and variant), and the targets of #35 judged against them.
 */

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const r2 = (x: number) => Number(x.toFixed(2))
const KIB = 1024

export interface Row {
  bytes: number
  variant: Run['variant']
  system: System
  acceptedPerSecond: number
  deliveredPerSecond: number
  /** CPU milliseconds a mail: median, with the fastest and slowest run. */
  cpuMsPerMail: { median: number; min: number; max: number }
  peakRssMB?: number
  runs: number
}

export function summarize(runs: Run[], latencies: Partial<Record<System, Latency>>) {
  const keys = [...new Set(runs.map((r) => `${r.bytes}|${r.variant}|${r.system}`))]
  const table: Row[] = keys.map((k) => {
    const mine = runs.filter((r) => `${r.bytes}|${r.variant}|${r.system}` === k)
    const cpu = mine.map((r) => (r.cpuSeconds / r.mails) * 1000)
    const rss = mine.flatMap((r) => (r.peakRss ? [r.peakRss] : []))
    return {
      bytes: mine[0]!.bytes,
      variant: mine[0]!.variant,
      system: mine[0]!.system,
      acceptedPerSecond: Math.round(median(mine.map((r) => r.acceptedPerSecond))),
      deliveredPerSecond: Math.round(median(mine.map((r) => r.deliveredPerSecond))),
      cpuMsPerMail: { median: r2(median(cpu)), min: r2(Math.min(...cpu)), max: r2(Math.max(...cpu)) },
      ...(rss.length ? { peakRssMB: Math.round(Math.max(...rss) / 2 ** 20) } : {}),
      runs: mine.length,
    }
  })
  const sizes = [...new Set(runs.map((r) => r.bytes))].sort((a, b) => a - b)
  const small = sizes[0]!
  const large = sizes.at(-1)!
  /** CPU ms a megabyte: (CPU a mail at the largest size − at the smallest) ÷ the difference in MB. */
  const perMb = (system: System) => {
    const at = (bytes: number) => table.find((r) => r.system === system && r.bytes === bytes && r.variant === 'one per connection')?.cpuMsPerMail.median
    const a = at(small)
    const b = at(large)
    return large > small && a !== undefined && b !== undefined ? r2((b - a) / ((large - small) / 2 ** 20)) : undefined
  }
  const systems = [...new Set(runs.map((r) => r.system))]
  return {
    table,
    cpuMsPerMbPerSystem: Object.fromEntries(systems.map((s) => [s, perMb(s)])),
    latencyAt50PerSecond: latencies,
  }
}

export interface Verdict {
  figure: string
  value: string
  target: string
  ok: boolean
}

/** The targets of #35 that this run measured, each judged. */
export function judge(s: ReturnType<typeof summarize>): Verdict[] {
  const row = (system: System, bytes: number, variant: Run['variant'] = 'one per connection') =>
    s.table.find((r) => r.system === system && r.bytes === bytes && r.variant === variant)
  const out: Verdict[] = []
  const ratio = (figure: string, a: number | undefined, b: number | undefined, op: '≤' | '≥', limit: number) => {
    if (a === undefined || b === undefined) return
    const x = a / b
    out.push({ figure, value: `${x.toFixed(2)}× (${a} / ${b})`, target: `${op} ${limit}×`, ok: op === '≤' ? x <= limit : x >= limit })
  }
  const cpu = (system: System) => row(system, 60 * KIB)?.cpuMsPerMail.median
  ratio('box CPU per 60 KB mail against Postfix as a plain relay (ms)', cpu('box'), cpu('postfix'), '≤', 1.3)
  ratio('box CPU per 60 KB mail against Postfix + OpenDKIM (ms)', cpu('box'), cpu('postfix + opendkim'), '≤', 1.0)
  const mb = s.cpuMsPerMbPerSystem
  ratio('per-MB CPU cost against Postfix (ms a MB)', mb.box, mb.postfix, '≤', 2)
  ratio(
    'accepted/s at 60 KB, one mail per connection, against Postfix as a plain relay',
    row('box', 60 * KIB)?.acceptedPerSecond,
    row('postfix', 60 * KIB)?.acceptedPerSecond,
    '≥',
    0.7,
  )
  const lat = s.latencyAt50PerSecond
  ratio('submission latency p99 at 50 mails/s against Postfix (ms, greeting apart)', lat.box?.p99Ms, lat.postfix?.p99Ms, '≤', 3)
  return out
}
