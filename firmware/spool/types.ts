import { createError } from '../box-errors.ts'

/**
 * The states of a mail in the queue, in this order (the index stores the position).
 * `awaiting`: a statement of a read-receipt class, delivered and kept (still encrypted)
 * until its read receipt comes, its second send is due, or it owes paper (M11).
 */
export const SPOOL_STATES = ['queued', 'inflight', 'deferred', 'held', 'awaiting'] as const
export type SpoolState = (typeof SPOOL_STATES)[number]

/**
 * #34: every move a mail makes, declared (`final`: its end, the record shredded). The spool
 * checks each state change against this table and throws on any other: a move nobody
 * declared is a bug, found where it happens rather than as a mail stuck or sent twice.
 * - queued → inflight: claimed when due; → held: an operator holds it.
 * - inflight → deferred: retried later (or `held`, when an operator held it meanwhile);
 *   → awaiting: delivered, kept for its read receipt (M11); → final: delivered, bounced, expired, read.
 * - deferred → inflight when due again; → deferred: an operator retries it now; → held.
 * - held → deferred: released; → held: the attempt that was under way ends; → final: removed.
 * - awaiting → inflight: its wait is over, or its read came (and ends it).
 */
export const TRANSITIONS = {
  queued: ['inflight', 'held'],
  inflight: ['deferred', 'held', 'awaiting', 'final'],
  deferred: ['inflight', 'deferred', 'held'],
  held: ['deferred', 'held', 'final'],
  awaiting: ['inflight'],
} as const satisfies Record<SpoolState, readonly (SpoolState | 'final')[]>

/** #34: a state change the table does not declare: a bug. */
export class SpoolTransitionError extends createError('ESPOOL_TRANSITION', 'SpoolTransitionError') {}

/** Throws SpoolTransitionError unless the table declares the mail's move from its state to `to`. */
export function checkTransition(e: { id: string; state: SpoolState }, to: SpoolState | 'final'): void {
  if (!(TRANSITIONS[e.state] as readonly string[]).includes(to)) throw new SpoolTransitionError(`${e.id}: ${e.state} → ${to} is not a declared transition`)
}

/**
 * `removed`: taken out of the queue by an operator (held first), with a notice to the firm.
 * `read` and `unread` end an awaiting statement (M11): its read receipt came, or the time for
 * it ran out (paper owed).
 */
export type FinalOutcome = 'delivered' | 'bounced' | 'expired' | 'removed' | 'read' | 'unread'

/** What the spool keeps about an awaiting statement (M11): journalled with its state, never addresses. */
export interface ReceiptWait {
  /** Times the statement was delivered (1 or 2). */
  sends: number
  /** When it was first delivered (ms). */
  firstSentAt: number
  /** Its read came while it was being sent again: it ends as read as soon as it can. */
  read?: boolean
}

export const encodeWait = (w: ReceiptWait) => `${w.sends}.${Math.floor(w.firstSentAt).toString(36)}${w.read ? '.r' : ''}`
export function decodeWait(text: string | undefined): ReceiptWait | undefined {
  const [sends, first, read] = (text ?? '').split('.')
  const w = { sends: Number(sends), firstSentAt: parseInt(first ?? '', 36), ...(read === 'r' ? { read: true } : {}) }
  return Number.isInteger(w.sends) && w.sends > 0 && Number.isFinite(w.firstSentAt) ? w : undefined
}

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
