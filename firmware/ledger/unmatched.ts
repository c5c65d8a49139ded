import type { LedgerStore } from './store.ts'

/** A report no token tied to a statement (#30), as the admin page lists it. */
export interface UnmatchedReport {
  box: string
  seq: number
  at: number
  client: string
  kind: string
  status: string
  category: string
  /** The receiver's words as the trail keeps them (redacted). */
  reply: string
  /** The statement the report's Message-ID hint points to, for a person to look at; never applied. */
  hintQueueId: string | null
  hintStatementId: string | null
}

/**
 * The latest reports without a token, newest first (#30, M8): the statement
 * the quoted Message-ID points to (by its hash, decide.ts messageIdHint) is
 * shown as a hint for a person, who decides what to do about it elsewhere.
 */
export async function unmatchedReports(store: LedgerStore, opts: { limit?: number; before?: number } = {}): Promise<UnmatchedReport[]> {
  const rows = await store.all<Record<string, unknown>>(
    'SELECT u.box, u.seq, u.at, u.client, u.kind, u.status, u.category, u.reply, ' +
      '(SELECT s.id FROM statements s WHERE s.box = u.box AND s.message_id_hint = u.hint LIMIT 1) AS hint_id, ' +
      '(SELECT s.statement_id FROM statements s WHERE s.box = u.box AND s.message_id_hint = u.hint LIMIT 1) AS hint_statement ' +
      'FROM unmatched_reports u WHERE u.at < ? ORDER BY u.at DESC, u.seq DESC LIMIT ?',
    [opts.before ?? Number.MAX_SAFE_INTEGER, opts.limit ?? 200],
  )
  return rows.map((r) => ({
    box: String(r.box),
    seq: Number(r.seq),
    at: Number(r.at),
    client: String(r.client),
    kind: String(r.kind),
    status: String(r.status),
    category: String(r.category),
    reply: String(r.reply),
    hintQueueId: typeof r.hint_id === 'string' ? r.hint_id : null,
    hintStatementId: typeof r.hint_statement === 'string' ? r.hint_statement : null,
  }))
}
