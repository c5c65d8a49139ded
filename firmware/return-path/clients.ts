import type { SMTPServerSession } from 'smtp-server'
import type { BoxEvent, EventSink } from '../events.ts'
import type { Hold } from '../memory-budget.ts'
import type { ReturnRef } from './verp.ts'

/**
 * What the return-path listener (listener.ts) keeps about the clients of the internet that
 * send to it (#29, #30): how often each kind of report was refused, how many audit records
 * each address has caused in the last minute, and each session's transaction.
 */

export type Refusal = Extract<BoxEvent, { type: 'returnpath.refused' }>['reason']

/** Refusals are counted and reported at most this often (a flood of junk must not flood the trail). */
const REFUSAL_REPORT_MS = 60_000

/** Refusals by reason, put in the trail as counts (`returnpath.refused`) at most once a minute. */
export class RefusalCounts {
  readonly #events: EventSink
  readonly #counts = new Map<Refusal, number>()
  #timer: NodeJS.Timeout | undefined

  constructor(events: EventSink) {
    this.#events = events
  }

  add(reason: Refusal): void {
    this.#counts.set(reason, (this.#counts.get(reason) ?? 0) + 1)
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined
      this.flush()
    }, REFUSAL_REPORT_MS)
    this.#timer.unref?.()
  }

  /** Reports the counts now (at stop) and starts again from zero. */
  flush(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    for (const [reason, count] of this.#counts) this.#events.emit({ type: 'returnpath.refused', reason, count })
    this.#counts.clear()
  }
}

/** Audit records each address has caused in the last minute (`returnPath.reportsPerMinutePerClient`). */
export class RecordsPerMinute {
  readonly #recent = new Map<string, number[]>()

  /** Whether `records` more from `ip` stay within `limit` a minute; if so they are counted. */
  take(ip: string, records: number, limit: number, now: number): boolean {
    const recent = (this.#recent.get(ip) ?? []).filter((t) => now - t < 60_000)
    if (recent.length + records > limit) return false
    for (let i = 0; i < records; i++) recent.push(now)
    this.#recent.set(ip, recent)
    // Clients that stopped sending leave their entries: pruned when many addresses have come.
    if (this.#recent.size > 10_000) for (const [k, v] of this.#recent) if (now - v[v.length - 1]! >= 60_000) this.#recent.delete(k)
    return true
  }
}

const STATE = Symbol('return-path')
type State = {
  refs: ReturnRef[]
  /** Token local parts already taken in this transaction (lower case). */
  locals: Set<string>
  /** RCPT commands in this transaction. */
  rcpts: number
  /** Room in the shared pool, while the report is larger than the connection's own share. */
  hold?: Hold
  /** Counted against its address's connections. */
  counted?: boolean
}

/** A session's transaction as the listener keeps it. */
export function state(session: SMTPServerSession): State {
  const s = session as SMTPServerSession & { [STATE]?: State }
  return (s[STATE] ??= { refs: [], locals: new Set(), rcpts: 0 })
}
