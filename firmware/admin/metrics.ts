import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { Clock } from '../../hal/clock.ts'
import type { BoxEvent, EventSink } from '../events.ts'
import { ALARM_KINDS, type Alarm } from './views.ts'

/**
 * What the box counts for its operators (S11): Prometheus metrics on the
 * admin listener's `/metrics`, and the series the dashboard draws (the last
 * hour at 10 s, the last day at 1 min). Counts come from the box's events,
 * the one place every submission, delivery and bounce is told of; levels
 * (queue by state, bytes sent) are read when sampled.
 */
export interface Levels {
  /** Queue by state, and `total`. */
  queue(): Record<string, number>
  /** When the oldest queued mail was received (ms since the epoch), or undefined. */
  oldestQueued(): number | undefined
  /** Bytes the delivery budget has let out since start. */
  bytesOut(): number
  /** The same, by egress address. */
  bytesByEgress(): Record<string, number>
  /** The delivery budget, bits per second. */
  capBitsPerSecond(): number
  /** The HSM's last health check: reachable, and the days left on each certificate. */
  hsm(): { up: boolean; certificates: { label: string; daysLeft: number }[] } | undefined
  /** The data directory's disk (spool and audit trail live there). */
  dataDisk(): { free: number; total: number }
}

export interface Point {
  t: number
  submissions: number
  deliveries: number
  deferrals: number
  bounces: number
  bitsOut: number
}

interface Running {
  submissions: number
  deliveries: number
  deferrals: number
  bounces: number
}

const SHORT_MS = 10_000
const SHORT_POINTS = 360
const LONG_MS = 60_000
const LONG_POINTS = 1440

export class BoxMetrics implements EventSink {
  readonly registry = new Registry()
  readonly #submissions = new Counter({
    name: 'sg_submissions_total',
    help: 'Mails submitted, by outcome and SMTP code',
    labelNames: ['outcome', 'code'],
    registers: [this.registry],
  })
  readonly #deliveries = new Counter({
    name: 'sg_delivery_attempts_total',
    help: 'Delivery attempts, by outcome',
    labelNames: ['outcome'],
    registers: [this.registry],
  })
  readonly #bySource = new Counter({
    name: 'sg_delivery_attempts_by_source_total',
    help: 'Delivery attempts, by egress address',
    labelNames: ['source'],
    registers: [this.registry],
  })
  readonly #finals = new Counter({
    name: 'sg_mails_final_total',
    help: 'Mails that reached a final state, by outcome',
    labelNames: ['outcome'],
    registers: [this.registry],
  })
  readonly #reports = new Counter({
    name: 'sg_returned_reports_total',
    help: 'Reports that came back (bounces, read receipts), by kind and by what they did (bounce, read, none)',
    labelNames: ['kind', 'effect'],
    registers: [this.registry],
  })
  readonly #logins = new Counter({ name: 'sg_admin_logins_total', help: 'Admin page logins, by outcome', labelNames: ['outcome'], registers: [this.registry] })
  readonly #signSeconds = new Histogram({
    name: 'sg_hsm_sign_seconds',
    help: 'Time the HSM takes for one signature (S/MIME, DKIM, audit checkpoints)',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  })
  readonly #levels: Levels
  readonly #clock: Clock
  readonly #running: Running = { submissions: 0, deliveries: 0, deferrals: 0, bounces: 0 }
  #last: { t: number; running: Running; bytes: number } | undefined
  readonly #short: Point[] = []
  readonly #long: Point[] = []
  #minute: Point | undefined
  #timer: NodeJS.Timeout | undefined

  constructor(o: { levels: Levels; clock: Clock }) {
    this.#levels = o.levels
    this.#clock = o.clock
    for (const m of [...levelMetrics(o.levels, o.clock), this.#alarms]) this.registry.registerMetric(m)
  }

  /** The firm's webhook endpoints failing now, with since when (for the dashboard's alarms). */
  readonly failingWebhooks = new Map<string, string>()
  /** The audit trail's last report of being over its disk budget, until a day passes without one. */
  auditOverBudget: { bytes: number; budget: number; at: number } | undefined

  /** S11: the dashboard's alarms by kind, as last counted (`setAlarms`, at each scrape). */
  readonly #alarms = new Gauge({
    registers: [],
    name: 'sg_alarms',
    help: "Alarms the box raises now, by kind (the dashboard's list; docs/monitoring/alerts.yml has a rule for each kind)",
    labelNames: ['kind'],
  })

  /** The alarms raised now (views.ts `alarms`): every kind is exported, 0 when quiet. */
  setAlarms(raised: readonly Alarm[]): void {
    for (const kind of ALARM_KINDS) this.#alarms.set({ kind }, raised.filter((a) => a.kind === kind).length)
  }

  /** One HSM signature took `seconds` (hal/hsm's KeyStore.onSign). */
  observeSign(seconds: number): void {
    this.#signSeconds.observe(seconds)
  }

  emit(e: BoxEvent): void {
    switch (e.type) {
      case 'submission.accepted':
        this.#submissions.inc({ outcome: 'accepted', code: '250' })
        this.#running.submissions++
        break
      case 'submission.refused':
        this.#submissions.inc({ outcome: 'refused', code: e.code.slice(0, 3) })
        break
      case 'delivery.attempt':
        this.#deliveries.inc({ outcome: e.outcome })
        if (e.sourceIp) this.#bySource.inc({ source: e.sourceIp })
        if (e.outcome === 'delivered') this.#running.deliveries++
        else if (e.outcome === 'deferred') this.#running.deferrals++
        else this.#running.bounces++
        break
      case 'spool.final':
        this.#finals.inc({ outcome: e.outcome })
        break
      case 'returnpath.report':
        this.#reports.inc({ kind: e.kind, effect: e.effect })
        // #30: only a report that decided a bounce is one (not a forged or mismatched one).
        if (e.effect === 'bounce') this.#running.bounces++
        break
      case 'admin.login':
        this.#logins.inc({ outcome: e.outcome })
        break
      case 'reports.webhook_failing':
        this.failingWebhooks.set(e.url, e.since)
        break
      case 'reports.webhook_recovered':
        this.failingWebhooks.delete(e.url)
        break
      case 'audit.disk_budget':
        this.auditOverBudget = { bytes: e.bytes, budget: e.budget, at: this.#clock.now() }
        break
      default:
    }
  }

  /** Takes a point of the series now (the dashboard's charts); every 10 s while started. */
  sample(): void {
    const t = this.#clock.now()
    const bytes = this.#levels.bytesOut()
    const last = this.#last
    this.#last = { t, running: { ...this.#running }, bytes }
    if (!last || t <= last.t) return
    const s = (t - last.t) / 1000
    const p: Point = {
      t,
      submissions: (this.#running.submissions - last.running.submissions) / s,
      deliveries: (this.#running.deliveries - last.running.deliveries) / s,
      deferrals: (this.#running.deferrals - last.running.deferrals) / s,
      bounces: (this.#running.bounces - last.running.bounces) / s,
      bitsOut: ((bytes - last.bytes) * 8) / s,
    }
    push(this.#short, p, SHORT_POINTS)
    // The day's series: the mean of the minute's points, kept when the minute is over.
    const minute = Math.floor(t / LONG_MS) * LONG_MS
    if (this.#minute && this.#minute.t !== minute) {
      push(this.#long, this.#minute, LONG_POINTS)
      this.#minute = undefined
    }
    const m = (this.#minute ??= { t: minute, submissions: 0, deliveries: 0, deferrals: 0, bounces: 0, bitsOut: 0 })
    const n = this.#short.filter((x) => x.t >= minute).length
    for (const k of ['submissions', 'deliveries', 'deferrals', 'bounces', 'bitsOut'] as const) m[k] += (p[k] - m[k]) / n
  }

  /** The last hour (10 s points) or the last day (1 min points). */
  series(span: 'hour' | 'day'): { points: Point[]; capBitsPerSecond: number } {
    const points = span === 'hour' ? [...this.#short] : [...this.#long, ...(this.#minute ? [this.#minute] : [])]
    return { points, capBitsPerSecond: this.#levels.capBitsPerSecond() }
  }

  start(): void {
    this.sample()
    this.#timer = setInterval(() => this.sample(), SHORT_MS)
    this.#timer.unref()
  }

  stop(): void {
    clearInterval(this.#timer)
  }
}

function push<T>(ring: T[], v: T, max: number): void {
  ring.push(v)
  if (ring.length > max) ring.splice(0, ring.length - max)
}

/** S11: the levels read at each scrape (queue, bytes out, the cap, the oldest mail, HSM, certificates, the data disk). */
function levelMetrics(levels: Levels, clock: Clock): (Gauge | Counter)[] {
  return [
    new Gauge({
      registers: [],
      name: 'sg_queue_mails',
      help: 'Mails in the queue, by state',
      labelNames: ['state'],
      collect() {
        for (const [state, n] of Object.entries(levels.queue())) if (state !== 'total') this.set({ state }, n)
      },
    }),
    new Counter({
      registers: [],
      name: 'sg_egress_bytes_total',
      help: 'Bytes sent to receivers through the delivery budget',
      collect() {
        this.reset()
        this.inc(levels.bytesOut())
      },
    }),
    new Counter({
      registers: [],
      name: 'sg_egress_bytes_by_source_total',
      help: 'Bytes sent to receivers, by egress address',
      labelNames: ['source'],
      collect() {
        this.reset()
        for (const [source, bytes] of Object.entries(levels.bytesByEgress())) this.inc({ source }, bytes)
      },
    }),
    new Gauge({
      registers: [],
      name: 'sg_bandwidth_cap_bits_per_second',
      help: 'The delivery bandwidth budget (M3)',
      collect() {
        this.set(levels.capBitsPerSecond())
      },
    }),
    new Gauge({
      registers: [],
      name: 'sg_queue_oldest_age_seconds',
      help: 'Age of the oldest mail in the queue (0 when it is empty)',
      collect() {
        const oldest = levels.oldestQueued()
        this.set(oldest === undefined ? 0 : Math.max(0, (clock.now() - oldest) / 1000))
      },
    }),
    new Gauge({
      registers: [],
      name: 'sg_hsm_up',
      help: 'The HSM answered its last health check with every key present (1) or not (0)',
      collect() {
        const h = levels.hsm()
        if (h) this.set(h.up ? 1 : 0)
      },
    }),
    new Gauge({
      registers: [],
      name: 'sg_certificate_days_left',
      help: 'Days until each signing certificate in the HSM expires',
      labelNames: ['label'],
      collect() {
        this.reset()
        for (const c of levels.hsm()?.certificates ?? []) this.set({ label: c.label }, c.daysLeft)
      },
    }),
    new Gauge({
      registers: [],
      name: 'sg_data_disk_bytes',
      help: "The data directory's disk (spool, audit trail, ledger): free and total bytes",
      labelNames: ['kind'],
      collect() {
        const d = levels.dataDisk()
        this.set({ kind: 'free' }, d.free)
        this.set({ kind: 'total' }, d.total)
      },
    }),
  ]
}
