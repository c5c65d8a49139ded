/** The states of a mail in the queue, in this order (the index stores the position). */
export const SPOOL_STATES = ['queued', 'inflight', 'deferred', 'held'] as const
export type SpoolState = (typeof SPOOL_STATES)[number]

/** `removed`: taken out of the queue by an operator (held first), with a notice to the firm. */
export type FinalOutcome = 'delivered' | 'bounced' | 'expired' | 'removed'

/** What the spool keeps in memory about a queued mail: never its content or addresses. */
export interface SpoolEntry {
  id: string
  epoch: string
  created: number
  state: SpoolState
  attempts: number
  nextAttemptAt: number
}

/**
 * Recipients of a mail that need no more attempts, as indexes into its
 * envelope's recipient list (the journal is clear text: never addresses).
 * Only a mail with several recipients, some final and some not, has any.
 */
export interface RecipientsDone {
  readonly delivered: readonly number[]
  readonly bounced: readonly number[]
}

/** `0,2;1`: delivered indexes, then bounced ones. */
export function encodeDone(d: RecipientsDone): string {
  return `${d.delivered.join(',')};${d.bounced.join(',')}`
}

export function decodeDone(text: string): RecipientsDone {
  const [delivered = '', bounced = ''] = text.split(';')
  const list = (x: string) =>
    x
      ? x
          .split(',')
          .map(Number)
          .filter((n) => Number.isInteger(n) && n >= 0)
      : []
  return { delivered: list(delivered), bounced: list(bounced) }
}
