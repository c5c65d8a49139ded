import type { monitorEventLoopDelay } from 'node:perf_hooks'

type IntervalHistogram = ReturnType<typeof monitorEventLoopDelay>

type Counts = Record<string, unknown>

/**
 * What an operator checks first (`npm run status`, the control socket's `status`): queue,
 * delivery, policy hits, HSM and certificates, memory (S11), and what clients on every
 * listener cost (#29). The parts are read at each call; none is kept here.
 */
export interface StatusParts {
  startedAt: string
  spool: { stats(): Counts; journalWrites: { writes: { summary(): unknown } } }
  submission: { memory: unknown; guardCounts: Counts | undefined }
  audit: { backlog: number }
  returnPath: { counts: Counts }
  admin: { clients: { counts: Counts } } | undefined
  tracking: { clients: { counts: Counts } }
  delivery: {
    counts: Counts
    inFlight: number
    journalLag: { summary(): unknown }
    egress: { paused(): { until: number }[] }
  }
  policy: { counters: Map<string, unknown> }
  /** `last`: what the HSM's own periodic check found (the scrape's view); `check`: a probe now (a person asking). */
  hsm: { check(): Promise<object>; readonly last: object | undefined; readonly probeSummary?: unknown }
  /** #33: the box's own measure of how long its event loop was held up since it started serving. */
  loopDelay: IntervalHistogram
}

export function statusReport(p: () => StatusParts): (fresh?: boolean) => Promise<Record<string, unknown>> {
  return async (fresh = true) => {
    const s = p()
    return {
      pid: process.pid,
      node: process.version,
      startedAt: s.startedAt,
      spool: s.spool.stats(),
      memory: { ...process.memoryUsage(), submission: s.submission.memory },
      submission: { ...s.submission.guardCounts, auditBacklog: s.audit.backlog },
      returnPath: s.returnPath.counts,
      admin: { clientErrors: s.admin?.clients.counts ?? {} },
      tracking: { clientErrors: s.tracking.clients.counts },
      delivery: {
        ...s.delivery.counts,
        inFlight: s.delivery.inFlight,
        journalLagMs: s.delivery.journalLag.summary(),
        // #33: what the journal's stamps leave out: a group's stamp to its write returning durable.
        journalWriteMs: s.spool.journalWrites.writes.summary(),
        paused: s.delivery.egress.paused().map((x) => ({ ...x, until: new Date(x.until).toISOString() })),
      },
      policy: Object.fromEntries(s.policy.counters),
      // #38: the start-up probe's findings beside the token's state (the dashboard's HSM card).
      hsm: { ...((!fresh && s.hsm.last) || (await s.hsm.check())), probe: s.hsm.probeSummary },
      eventLoop: { maxMs: Math.round(s.loopDelay.max / 1e5) / 10, p99Ms: Math.round(s.loopDelay.percentile(99) / 1e5) / 10 },
    }
  }
}
