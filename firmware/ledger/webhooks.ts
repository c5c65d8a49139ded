import { createHmac } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Agent, request } from 'node:https'
import { getCACertificates } from 'node:tls'
import type { Clock } from '../../hal/clock.ts'
import type { Hsm } from '../../hal/hsm/index.ts'
import type { Component } from '../component.ts'
import type { Config } from '../config/load.ts'
import type { EventSink } from '../events.ts'
import { WEBHOOK_SIGNING_LABEL } from '../keys/labels.ts'
import type { Logger } from '../log.ts'
import type { Ledger } from './ledger.ts'
import type { LedgerStore } from './store.ts'

/** The header the firm checks: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. */
export const SIGNATURE_HEADER = 'Statement-Gateway-Signature'
/** How the per-endpoint secret is derived from the HSM key; a new version changes every secret. */
const DERIVATION = 'statement-gateway webhook v1 '
/** A reply body longer than this is not read (its status is what counts). */
const MAX_REPLY = 4096

/**
 * The secret one endpoint verifies signatures with: HMAC-SHA256 in the HSM
 * (key `reports/webhook-signing`, which never leaves it) of the endpoint's URL.
 * The firm gets it with `npm run reports -- webhook-secret URL`; changing the
 * URL changes the secret, and no endpoint can forge another's requests.
 */
export async function webhookSecret(hsm: Hsm, url: string): Promise<Buffer> {
  return hsm.keys.hmac(WEBHOOK_SIGNING_LABEL, Buffer.from(DERIVATION + url))
}

/** The signature header for a body sent at `unixSeconds` (what the firm recomputes to check it). */
export function signatureHeader(secret: Buffer, unixSeconds: number, body: string): string {
  return `t=${unixSeconds},v1=${createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex')}`
}

type Outgoing = { event_id: string; ordering: string; pos: number; payload: string; attempts: number }

/** One endpoint of the firm: its own agent, secret, in-flight set and failure state. */
class Endpoint {
  readonly url: string
  readonly agent: Agent
  secret: Buffer | undefined
  readonly inFlight = new Set<string>()
  /** Orderings (statements) with an event in flight: the next of the same statement waits for it. */
  readonly busy = new Set<string>()
  failingSince: number | undefined
  lastError = ''
  alarmed = false

  constructor(url: string, caFile: string, concurrency: number) {
    this.url = url
    const extra = caFile ? [readFileSync(caFile, 'utf8')] : []
    this.agent = new Agent({
      keepAlive: true,
      maxSockets: concurrency,
      // The OS store (Debian's ca-certificates, with the firm's own CAs added there) plus the configured CA.
      ca: [...getCACertificates('system'), ...extra],
      minVersion: 'TLSv1.2',
      rejectUnauthorized: true,
    })
  }
}

/**
 * Webhooks to the firm (M9): every event the ledger put in its outbox is
 * POSTed as JSON to the endpoint that wants it, signed, and deleted from the
 * outbox only once the endpoint answered 2xx — at least once, with the event
 * id for de-duplication. Events of one statement go one at a time in the
 * order the trail recorded them; different statements go in parallel up to
 * `concurrency`. A failing endpoint is probed with one event at a time on
 * the back-off schedule; failing longer than `alarmAfterSeconds` raises an
 * alarm (log, audit trail) and a recovery is recorded too. Nothing here ever
 * waits on mail or holds it up: the outbox is the ledger's, filled from the
 * audit trail.
 */
export class WebhookSender implements Component {
  readonly name = 'webhooks'
  readonly #config: Config['reports']['webhooks']
  readonly #log: Logger
  readonly #hsm: Hsm
  readonly #ledger: Ledger
  readonly #events: EventSink
  readonly #clock: Clock
  readonly #endpoints: Endpoint[] = []
  #timer: NodeJS.Timeout | undefined
  #ticking = false
  #stopped = false
  readonly #requests = new Set<Promise<void>>()

  constructor(deps: { config: Config; log: Logger; hsm: Hsm; ledger: Ledger; events: EventSink; clock: Clock }) {
    this.#config = deps.config.reports.webhooks
    this.#log = deps.log.child({ component: 'webhooks' })
    this.#hsm = deps.hsm
    this.#ledger = deps.ledger
    this.#events = deps.events
    this.#clock = deps.clock
    if (!deps.config.reports.enabled) return
    for (const e of this.#config.endpoints) this.#endpoints.push(new Endpoint(e.url, e.caFile, this.#config.concurrency))
  }

  start(): Promise<void> {
    if (this.#endpoints.length === 0) return Promise.resolve()
    this.#stopped = false
    this.#ledger.onApplied(() => this.#kick())
    this.#log.info({ endpoints: this.#endpoints.map((e) => e.url) }, 'webhooks: sending the ledger outbox to the firm')
    this.#kick()
    return Promise.resolve()
  }

  async stop(): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    // Requests in flight finish (or time out); what they did not deliver stays in the outbox.
    await Promise.allSettled([...this.#requests])
    for (const e of this.#endpoints) e.agent.destroy()
  }

  /** Events waiting for one endpoint (all endpoints without a URL). */
  async pending(url?: string): Promise<number> {
    const store = this.#store()
    if (!store) return 0
    const row = await store.get<{ n: number }>(
      `SELECT COUNT(*) AS n FROM outbox WHERE box = ?${url ? ' AND url = ?' : ''}`,
      url ? [this.#ledger.box, url] : [this.#ledger.box],
    )
    return Number(row?.n ?? 0)
  }

  #store(): LedgerStore | undefined {
    try {
      return this.#ledger.store
    } catch {
      return undefined // reports off, or the ledger stopped
    }
  }

  #kick(delay = 0): void {
    if (this.#stopped) return
    clearTimeout(this.#timer)
    this.#timer = setTimeout(() => void this.#tick(), delay)
    this.#timer.unref()
  }

  async #tick(): Promise<void> {
    if (this.#ticking || this.#stopped) return
    this.#ticking = true
    let next = 1000
    try {
      for (const e of this.#endpoints) next = Math.min(next, await this.#fill(e))
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'webhooks: reading the outbox failed; trying again')
    } finally {
      this.#ticking = false
      this.#kick(next)
    }
  }

  /** Starts what one endpoint can take now; returns when to look again (ms). */
  async #fill(e: Endpoint): Promise<number> {
    const store = this.#store()
    if (!store) return 1000
    const now = this.#clock.now()
    if (!e.secret) {
      try {
        e.secret = await webhookSecret(this.#hsm, e.url)
      } catch (err) {
        this.#failed(e, `the signing key is not available: ${(err as Error).message}`, now)
        return 5000
      }
    }
    // A failing endpoint gets one probe at a time; a healthy one up to `concurrency` statements at once.
    const room = (e.failingSince === undefined ? this.#config.concurrency : 1) - e.inFlight.size
    this.#alarm(e, now)
    if (room <= 0) return 1000
    // The first event of each statement, oldest first, that is due; the statements in flight are skipped.
    const rows = await store.all<Outgoing>(
      'SELECT o.event_id, o.ordering, o.pos, o.payload, o.attempts FROM outbox o WHERE o.box = ? AND o.url = ? AND o.next_at <= ? ' +
        'AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.box = o.box AND p.url = o.url AND p.ordering = o.ordering AND p.pos < o.pos) ' +
        'ORDER BY o.pos LIMIT ?',
      [this.#ledger.box, e.url, now, room + e.busy.size],
    )
    let started = 0
    for (const row of rows) {
      if (started >= room) break
      if (e.busy.has(row.ordering)) continue
      started++
      this.#send(e, row)
    }
    return started > 0 || e.inFlight.size > 0 ? 1000 : 250
  }

  #send(e: Endpoint, row: Outgoing): void {
    e.inFlight.add(row.event_id)
    e.busy.add(row.ordering)
    const work = this.#post(e, row.payload, row.event_id)
      .then(async (error) => {
        const store = this.#store()
        if (!store) return
        const now = this.#clock.now()
        if (error === undefined) {
          await store.run('DELETE FROM outbox WHERE box = ? AND url = ? AND event_id = ?', [this.#ledger.box, e.url, row.event_id])
          if (e.failingSince !== undefined) await this.#recovered(e)
          return
        }
        const waits = this.#config.retrySeconds
        const wait = waits[Math.min(row.attempts, waits.length - 1)]! * 1000
        await store.run('UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE box = ? AND url = ? AND event_id = ?', [
          now + wait,
          error.slice(0, 200),
          this.#ledger.box,
          e.url,
          row.event_id,
        ])
        this.#failed(e, error, now)
      })
      .catch((err: Error) => this.#log.warn({ url: e.url, err: err.message }, 'webhooks: updating the outbox failed; the event is sent again'))
      .finally(() => {
        e.inFlight.delete(row.event_id)
        e.busy.delete(row.ordering)
        this.#requests.delete(work)
        this.#kick()
      })
    this.#requests.add(work)
  }

  /** One POST; resolves undefined on 2xx, else what went wrong. */
  #post(e: Endpoint, body: string, eventId: string): Promise<string | undefined> {
    const t = Math.floor(this.#clock.now() / 1000)
    return new Promise((resolve) => {
      const req = request(
        e.url,
        {
          method: 'POST',
          agent: e.agent,
          timeout: this.#config.timeoutMs,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            'user-agent': 'statement-gateway',
            'statement-gateway-event-id': eventId,
            [SIGNATURE_HEADER.toLowerCase()]: signatureHeader(e.secret!, t, body),
          },
        },
        (res) => {
          let size = 0
          res.on('data', (d: Buffer) => {
            size += d.length
            if (size > MAX_REPLY) res.destroy()
          })
          res.on('close', () => {
            const status = res.statusCode ?? 0
            resolve(status >= 200 && status < 300 ? undefined : `HTTP ${status}`)
          })
          res.on('error', () => {})
        },
      )
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.#config.timeoutMs} ms`)))
      req.on('error', (err: Error) => resolve(err.message))
      req.end(body)
    })
  }

  #failed(e: Endpoint, error: string, now: number): void {
    if (e.failingSince === undefined) {
      e.failingSince = now
      this.#log.warn({ url: e.url, err: error }, 'webhook endpoint failing; events wait in the outbox and are retried')
    }
    e.lastError = error
    this.#alarm(e, now)
  }

  /** The alarm, once per spell of failure, when it has lasted `alarmAfterSeconds`. */
  #alarm(e: Endpoint, now: number): void {
    if (e.failingSince === undefined || e.alarmed || now - e.failingSince < this.#config.alarmAfterSeconds * 1000) return
    e.alarmed = true
    const since = new Date(e.failingSince).toISOString()
    void this.pending(e.url).then(
      (pending) => {
        this.#log.error({ url: e.url, since, pending, err: e.lastError }, 'ALARM: a webhook endpoint of the firm has been failing; mail is not affected')
        this.#events.emit({ type: 'reports.webhook_failing', url: e.url, since, pending, error: e.lastError })
      },
      () => {},
    )
  }

  async #recovered(e: Endpoint): Promise<void> {
    const was = e.alarmed
    e.failingSince = undefined
    e.alarmed = false
    const pending = await this.pending(e.url)
    this.#log.info({ url: e.url, pending }, 'webhook endpoint answers again')
    if (was) this.#events.emit({ type: 'reports.webhook_recovered', url: e.url, pending })
  }
}
