import type { Logger } from './log.ts'

/**
 * Things that happen to mail and keys, for the audit trail and reports. Events
 * carry ids and outcomes, never content or clear recipient addresses (S6).
 */
export type BoxEvent =
  | { type: 'spool.queued'; id: string; epoch: string; bytes: number }
  | { type: 'spool.deferred'; id: string; attempts: number; nextAttemptAt: number; reason: string }
  | { type: 'spool.final'; id: string; outcome: 'delivered' | 'bounced' | 'expired'; reason: string }
  | { type: 'spool.held' | 'spool.released'; id: string }
  | { type: 'spool.record_shredded'; id: string }
  | { type: 'spool.quarantined'; file: string; reason: string }
  | { type: 'spool.epoch_key_created' | 'spool.epoch_key_destroyed'; epoch: string }
  | { type: 'policy.decision'; id: string; account: string | undefined; profile: string; rule: string; mode: 'monitor' | 'enforce'; outcome: 'refused' | 'monitor-hit' }
  | {
      type: 'delivery.attempt'
      id: string
      kind: string
      outcome: 'delivered' | 'deferred' | 'bounced'
      mx: string | undefined
      sourceIp: string | undefined
      reply: string
      tls: string | undefined
    }
  | { type: 'policy.accepted'; id: string; account: string | undefined; profile: string }

export interface EventSink {
  emit(event: BoxEvent): void
}

/** Until the audit trail lands, events go to the JSON log (and to anyone listening in tests). */
export class LogEventSink implements EventSink {
  readonly #log: Logger
  readonly listeners: ((e: BoxEvent) => void)[] = []
  constructor(log: Logger) {
    this.#log = log.child({ component: 'events' })
  }
  emit(event: BoxEvent): void {
    this.#log.info({ event }, event.type)
    for (const l of this.listeners) l(event)
  }
}
