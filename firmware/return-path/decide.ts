import { createHash } from 'node:crypto'
import type { NoEffect } from '../events.ts'
import { OUTSIDE_TEXT_LIMIT, redactText } from '../pii/redact.ts'
import type { Classifier } from './classify.ts'
import { failureOf } from './report.ts'
import type { RecipientResult, Report } from './types.ts'
import type { ReturnRef } from './verp.ts'

export type { NoEffect } from '../events.ts'

/**
 * What a report does to one recipient of one statement (#30; M8, M9, M11):
 * a bounce (with its category and whether the address will never work), the
 * read, or nothing and why. The one place that decides: the listener writes
 * the decision into the report's audit record, the spool acts on it, and the
 * ledger applies that record only — neither reads the report itself.
 */
export type Decision =
  | { effect: 'bounce'; category: string; hard: boolean; status: string; action: 'failed'; reply: string }
  | { effect: 'read'; disposition: string; dispositionMode: 'automatic' | 'manual' }
  | { effect: 'none'; why: NoEffect; action?: string; category?: string; hard?: boolean; status?: string; reply?: string; disposition?: string }

/** How much of a receiver's words the box keeps (`returnPath.replyText`). */
export type ReplyText = 'masked' | 'none'

/** The recipient a DSN is about: a VERP address names one recipient, so its first failed (else first) one. */
export function failedRecipient(report: Report): RecipientResult | undefined {
  return report.recipients.find((x) => x.action === 'failed') ?? report.recipients[0]
}

/**
 * Decides for `ref` (undefined: the report came without a token). Only a
 * token of the right kind decides anything (DESIGN "only authenticated
 * evidence decides"): `b-` takes DSNs, `r-` MDNs.
 */
export function decide(report: Report, ref: ReturnRef | undefined, classifier: Classifier, replyText: ReplyText): Decision {
  const dsn = report.kind === 'dsn' ? failedRecipient(report) : undefined
  const described = dsn ? describeFailure(dsn, classifier, replyText) : {}
  if (!ref) return { effect: 'none', why: 'no-token', ...described, ...mdnOf(report) }
  if (report.kind === 'feedback') return { effect: 'none', why: 'complaint' }
  if (report.kind === 'auto-reply' || report.kind === 'unknown') return { effect: 'none', why: 'not-a-report' }
  if ((report.kind === 'dsn') !== (ref.kind === 'b')) return { effect: 'none', why: 'mismatched', ...described, ...mdnOf(report) }
  if (report.kind === 'mdn') {
    const d = report.disposition
    if (d?.type === 'displayed') return { effect: 'read', disposition: 'displayed', dispositionMode: d.action }
    return { effect: 'none', why: 'not-displayed', disposition: d?.type ?? '' }
  }
  if (!dsn || dsn.action !== 'failed') return { effect: 'none', why: 'not-failed', ...described }
  const { category, hard, status, reply } = describeFailure(dsn, classifier, replyText)
  return { effect: 'bounce', category, hard, status, action: 'failed', reply }
}

function describeFailure(r: RecipientResult, classifier: Classifier, replyText: ReplyText) {
  const c = classifier.classify(failureOf(r))
  return { action: r.action, category: c.category, hard: c.hard, status: c.status, reply: replyText === 'none' ? '' : redactText(r.diagnostic) }
}

function mdnOf(report: Report): { disposition?: string } {
  return report.kind === 'mdn' ? { disposition: report.disposition?.type ?? '' } : {}
}

/**
 * The Message-ID a report quotes, as a hint a person may follow (#30): a
 * hash, so that what an outsider wrote is not kept, and the ledger finds the
 * statement that has it by the same hash. Never used to decide anything.
 */
export function messageIdHint(messageId: string): string {
  const id = messageId.trim().replace(/^<|>$/g, '').toLowerCase()
  return createHash('sha256').update(id).digest('base64url').slice(0, 22)
}

/** The receiver's words for the firm's notice: the Diagnostic-Code with its reply and status codes, redacted. */
export function noticeDiagnostic(r: RecipientResult, replyText: ReplyText): string {
  if (replyText === 'none') return [r.reply, r.status].filter(Boolean).join(' ')
  return redactText(r.diagnostic || [r.reply, r.status].filter(Boolean).join(' '), OUTSIDE_TEXT_LIMIT)
}
