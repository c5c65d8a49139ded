import { bucketMs } from './apply.ts'
import type { LedgerStore, Param } from './store.ts'

/** Which statements a report covers: submission days (inclusive, `YYYY-MM-DD`), account, batch, class. */
export interface ReportFilter {
  from?: string
  to?: string
  account?: string
  batch?: string
  statementClass?: string
  /** Only recipients a paper statement is owed to (M8, M11). */
  paperOwed?: boolean
}

export const GROUPS = ['day', 'batch', 'account', 'class'] as const
export type GroupKey = (typeof GROUPS)[number]

export interface SummaryRow {
  day?: string
  batch?: string
  account?: string
  class?: string
  submitted: number
  recipients: number
  refused: number
  delivered: number
  deferred: number
  bouncedHard: number
  bouncedSoft: number
  expired: number
  removed: number
  /** Delivered, then bounced by a report that came back (counted in delivered and in bounced). */
  returned: number
  /** Not yet final: neither delivered nor bounced, expired or removed (a recipient delivered and then bounced is counted once). */
  pending: number
  opened: number
  openedByProxy: number
  clicked: number
  read: number
  paperOwed: number
  bouncesByReason: Record<string, number>
  refusedByCode: Record<string, number>
  /** Submission to the receiver's 250, per recipient (ms; from a histogram exact to ±12 %). */
  latencyMs: { p50: number; p95: number; p99: number } | undefined
}

const COUNTERS = {
  submitted: 'submitted',
  recipients: 'recipients',
  refused: 'refused',
  delivered: 'delivered',
  deferred: 'deferred',
  bouncedHard: 'bounced_hard',
  bouncedSoft: 'bounced_soft',
  expired: 'expired',
  removed: 'removed',
  opened: 'opened',
  openedByProxy: 'opened_by_proxy',
  clicked: 'clicked',
  read: 'read',
  paperOwed: 'paper_owed',
  returned: 'returned',
} as const

/** Where a filter's fields are in a query: the daily tables' columns, or the statement and recipient rows'. */
const DAILY = { day: 'day', account: 'account', batch: 'batch', class: 'class' }
const ROWS = { day: 'r.day', account: 's.account', batch: 's.batch', class: 's.statement_class' }

/** The WHERE clause of a filter (empty when it selects everything), with its parameters. */
function where(f: ReportFilter, at: typeof DAILY, extra: readonly string[] = []): { sql: string; params: Param[] } {
  const parts: string[] = []
  const params: Param[] = []
  const add = (cond: string, v: string | undefined) => {
    if (v === undefined) return
    parts.push(cond)
    params.push(v)
  }
  add(`${at.day} >= ?`, f.from)
  add(`${at.day} <= ?`, f.to)
  add(`${at.account} = ?`, f.account)
  add(`${at.batch} = ?`, f.batch)
  add(`${at.class} = ?`, f.statementClass)
  parts.push(...extra)
  return { sql: parts.length ? `WHERE ${parts.join(' AND ')}` : '', params }
}

/**
 * Counts per group (M9): submitted, refused by code, delivered, deferred,
 * bounced by reason (hard and soft), expired, opened, clicked, read, paper
 * owed, and delivery latency percentiles. Reads the daily counts, so a month
 * of millions of statements is a few hundred rows.
 */
export async function summary(store: LedgerStore, f: ReportFilter = {}, by: readonly GroupKey[] = ['day']): Promise<SummaryRow[]> {
  const keys = by // the daily tables name their columns as the groups are named
  const w = where(f, DAILY)
  const select = keys.length ? `${keys.join(', ')}, ` : ''
  const groupBy = keys.length ? `GROUP BY ${keys.join(', ')} ORDER BY ${keys.join(', ')}` : ''
  const sums = Object.values(COUNTERS)
    .map((c) => `SUM(${c}) AS ${c}`)
    .join(', ')
  const rows = await store.all<Record<string, unknown>>(`SELECT ${select}${sums} FROM daily ${w.sql} ${groupBy}`, w.params)
  const details = await store.all<Record<string, unknown> & { kind: string; key: string; n: number }>(
    `SELECT ${select}kind, key, SUM(n) AS n FROM daily_detail ${w.sql} GROUP BY ${[...keys, 'kind', 'key'].join(', ')}`,
    w.params,
  )
  const id = (r: Record<string, unknown>) => keys.map((k) => String(r[k])).join('\u0000')
  const out = new Map<string, SummaryRow & { latency: Map<number, number> }>()
  for (const r of rows) {
    if (r.submitted === null && r.refused === null) continue // no rows matched
    const row = {
      ...Object.fromEntries(keys.map((k) => [k, String(r[k])])),
      ...(Object.fromEntries(Object.entries(COUNTERS).map(([name, c]) => [name, Number(r[c] ?? 0)])) as Record<keyof typeof COUNTERS, number>),
      pending: 0,
      bouncesByReason: {},
      refusedByCode: {},
      latencyMs: undefined,
      latency: new Map<number, number>(),
    }
    // #30: each recipient in one final column: one delivered and then bounced is in both, so it is added back once.
    row.pending = row.recipients - row.delivered - row.bouncedHard - row.bouncedSoft + row.returned - row.expired - row.removed
    out.set(id(r), row)
  }
  for (const d of details) {
    const row = out.get(id(d))
    if (!row) continue
    const n = Number(d.n)
    if (d.kind === 'bounce') row.bouncesByReason[d.key] = n
    else if (d.kind === 'refused') row.refusedByCode[d.key] = n
    else if (d.kind === 'latency') row.latency.set(Number(d.key), n)
  }
  return [...out.values()].map(({ latency, ...row }) => ({ ...row, latencyMs: percentiles(latency) }))
}

/** p50/p95/p99 from a latency histogram (bucket → count). */
function percentiles(h: Map<number, number>): SummaryRow['latencyMs'] {
  const total = [...h.values()].reduce((a, b) => a + b, 0)
  if (total === 0) return undefined
  const buckets = [...h.entries()].sort((a, b) => a[0] - b[0])
  const at = (q: number) => {
    const rank = Math.ceil(q * total)
    let seen = 0
    for (const [b, n] of buckets) {
      seen += n
      if (seen >= rank) return Math.round(bucketMs(b))
    }
    return Math.round(bucketMs(buckets.at(-1)![0]))
  }
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) }
}

/** One recipient's line in an export or a statement's history; no address in clear, no content. */
export interface LedgerRow {
  box: string
  statement_id: string | null
  queue_id: string
  statement_class: string | null
  batch: string | null
  account: string | null
  day: string
  recipient: string
  recipient_hmac: string | null
  state: string
  accepted_at: number
  cert_serial: string | null
  delivered_at: number | null
  mx: string | null
  tls: string | null
  deferrals: number
  bounced_at: number | null
  bounce_reason: string | null
  bounce_hard: number | null
  expired_at: number | null
  removed_at: number | null
  opened_at: number | null
  open_agent: string | null
  clicked_at: number | null
  read_at: number | null
  paper_owed_at: number | null
  paper_reason: string | null
}

/** The columns of a recipient's line (exports, histories), in order, and where each comes from. */
const ROW_SQL: Record<keyof LedgerRow, string> = {
  box: 'r.box',
  statement_id: 's.statement_id',
  queue_id: 'r.id',
  statement_class: 's.statement_class',
  batch: 's.batch',
  account: 's.account',
  day: 'r.day',
  recipient: 'r.rcpt_mask',
  recipient_hmac: 'r.rcpt_hash',
  state: 'r.state',
  accepted_at: 'r.accepted_at',
  cert_serial: 's.cert_serial',
  delivered_at: 'r.delivered_at',
  mx: 'r.mx',
  tls: 'r.tls',
  deferrals: 'r.deferrals',
  bounced_at: 'r.bounced_at',
  bounce_reason: 'r.bounce_reason',
  bounce_hard: 'r.bounce_hard',
  expired_at: 'r.expired_at',
  removed_at: 'r.removed_at',
  opened_at: 'r.opened_at',
  open_agent: 'r.open_agent',
  clicked_at: 'r.clicked_at',
  read_at: 'r.read_at',
  paper_owed_at: 'r.paper_owed_at',
  paper_reason: 'r.paper_reason',
}
export const ROW_FIELDS = Object.keys(ROW_SQL) as readonly (keyof LedgerRow)[]
const ROW_COLUMNS = ROW_FIELDS.map((k) => `${ROW_SQL[k]} AS ${k}`).join(', ')

/** The recipient rows a filter selects: FROM and WHERE, with their parameters. */
function rowsWhere(f: ReportFilter): { sql: string; params: Param[] } {
  const w = where(f, ROWS, f.paperOwed ? ['r.paper_owed_at IS NOT NULL'] : [])
  return { sql: `FROM recipients r JOIN statements s ON s.box = r.box AND s.id = r.id ${w.sql}`, params: w.params }
}

/**
 * Every recipient row a filter selects, streamed (an export of a million rows holds a few hundred at a time),
 * in the order the ledger recorded them (no sort of a million rows first); each row is its values in `ROW_FIELDS` order.
 */
export function exportRows(store: LedgerStore, f: ReportFilter = {}): AsyncIterable<unknown[][]> {
  const w = rowsWhere(f)
  return store.iterate(`SELECT ${ROW_COLUMNS} ${w.sql}`, w.params)
}

/** How many rows exportRows would give (for a progress bar). */
export async function countRows(store: LedgerStore, f: ReportFilter = {}): Promise<number> {
  const w = rowsWhere(f)
  return Number((await store.get<{ n: number }>(`SELECT COUNT(*) AS n ${w.sql}`, w.params))?.n ?? 0)
}

/** A statement's whole history by the firm's statement id: every mail that carried it, every recipient. */
export async function statementHistory(store: LedgerStore, statementId: string): Promise<LedgerRow[]> {
  return store.all<LedgerRow & Record<string, unknown>>(
    `SELECT ${ROW_COLUMNS} FROM statements s JOIN recipients r ON r.box = s.box AND r.id = s.id WHERE s.statement_id = ? ORDER BY r.accepted_at, r.idx`,
    [statementId],
  )
}

/** One line of the paper-owed list: a recipient who must be sent the statement on paper (M8, M11). */
export const PAPER_FIELDS = [
  'account',
  'statement_id',
  'queue_id',
  'statement_class',
  'batch',
  'recipient',
  'recipient_hmac',
  'reason',
  'submitted_at',
  'delivered_at',
  'failed_at',
  'paper_owed_at',
] as const

/**
 * The paper-owed list of a month (M8, M11): every recipient of a statement
 * submitted in that month (submission days in the reporting time zone) that
 * is owed paper — bounced, expired, removed, or not read in time — ordered
 * by account, then when it became owed. Streamed in batches of value arrays,
 * in `PAPER_FIELDS` order.
 */
export function paperOwedRows(store: LedgerStore, month: string, account?: string): AsyncIterable<unknown[][]> {
  const w = where({ from: `${month}-01`, to: `${month}-31`, account }, ROWS, ['r.paper_owed_at IS NOT NULL'])
  return store.iterate(
    'SELECT s.account, s.statement_id, r.id, s.statement_class, s.batch, r.rcpt_mask, r.rcpt_hash, r.paper_reason, r.accepted_at, r.delivered_at, ' +
      `COALESCE(r.bounced_at, r.expired_at, r.removed_at), r.paper_owed_at FROM recipients r JOIN statements s ON s.box = r.box AND s.id = r.id ${w.sql} ` +
      'ORDER BY s.account, r.paper_owed_at, r.id, r.idx',
    w.params,
  )
}

/** What the ledger knows of one mail in the queue: the admin page's list shows it beside the spool's own facts. */
export interface QueueFacts {
  statementId: string | null
  account: string | null
  /** The first recipient, masked as the trail keeps it. */
  recipient: string | null
  recipients: number
  /** The receiver's last reply to a deferred attempt (hostile text: escaped where shown). */
  lastReply: string | null
}

/**
 * The ledger's facts for a page of queue ids (at most a page: one lookup by primary key each).
 * Mails the ledger has not seen yet (the trail's record still on its way) are missing from the map.
 */
export async function queueFacts(store: LedgerStore, box: string, ids: readonly string[]): Promise<Map<string, QueueFacts>> {
  const out = new Map<string, QueueFacts>()
  if (ids.length === 0) return out
  const marks = ids.map(() => '?').join(', ')
  const rows = await store.all<{
    id: string
    statement_id: string | null
    account: string | null
    recipient: string | null
    n: number
    last_reply: string | null
  }>(
    `SELECT s.id, s.statement_id, s.account, MIN(r.rcpt_mask) AS recipient, COUNT(r.idx) AS n, MAX(r.last_reply) AS last_reply
     FROM statements s LEFT JOIN recipients r ON r.box = s.box AND r.id = s.id
     WHERE s.box = ? AND s.id IN (${marks}) GROUP BY s.id, s.statement_id, s.account`,
    [box, ...ids],
  )
  for (const r of rows)
    out.set(r.id, { statementId: r.statement_id, account: r.account, recipient: r.recipient, recipients: Number(r.n), lastReply: r.last_reply })
  return out
}

/** One recipient of one mail as the ledger has followed it: the mail's history on the admin page's queue. */
export interface RecipientHistory {
  idx: number
  recipient: string
  state: string
  acceptedAt: number
  deferrals: number
  lastReply: string | null
  deliveredAt: number | null
  mx: string | null
  sourceIp: string | null
  tls: string | null
  bouncedAt: number | null
  bounceReason: string | null
  expiredAt: number | null
  removedAt: number | null
  readAt: number | null
  paperOwedAt: number | null
  paperReason: string | null
}

/** Every recipient of the mail `id`, in envelope order (empty when the ledger has not seen it yet). */
export async function mailHistory(store: LedgerStore, box: string, id: string): Promise<RecipientHistory[]> {
  const rows = await store.all<Record<string, unknown>>(
    `SELECT idx, rcpt_mask, state, accepted_at, deferrals, last_reply, delivered_at, mx, source_ip, tls, bounced_at, bounce_reason,
            expired_at, removed_at, read_at, paper_owed_at, paper_reason
     FROM recipients WHERE box = ? AND id = ? ORDER BY idx`,
    [box, id],
  )
  const n = (v: unknown) => (v === null || v === undefined ? null : Number(v))
  const s = (v: unknown) => (typeof v === 'string' ? v : null)
  return rows.map((r) => ({
    idx: Number(r.idx),
    recipient: String(r.rcpt_mask),
    state: String(r.state),
    acceptedAt: Number(r.accepted_at),
    deferrals: Number(r.deferrals),
    lastReply: s(r.last_reply),
    deliveredAt: n(r.delivered_at),
    mx: s(r.mx),
    sourceIp: s(r.source_ip),
    tls: s(r.tls),
    bouncedAt: n(r.bounced_at),
    bounceReason: s(r.bounce_reason),
    expiredAt: n(r.expired_at),
    removedAt: n(r.removed_at),
    readAt: n(r.read_at),
    paperOwedAt: n(r.paper_owed_at),
    paperReason: s(r.paper_reason),
  }))
}

/**
 * The queue ids of the mails that carried a statement id, or were sent to a recipient (by its
 * HMAC), newest first: the admin page's search of the queue. Both are indexed lookups.
 */
export async function queueIdsOf(store: LedgerStore, box: string, q: { statementId?: string; recipientHash?: string }, limit: number): Promise<string[]> {
  const sql = q.statementId
    ? 'SELECT id FROM statements WHERE statement_id = ? AND box = ? ORDER BY accepted_at DESC LIMIT ?'
    : 'SELECT id, MAX(accepted_at) AS at FROM recipients WHERE rcpt_hash = ? AND box = ? GROUP BY id ORDER BY at DESC LIMIT ?'
  const key = q.statementId ?? q.recipientHash
  if (!key) return []
  return (await store.all<{ id: string }>(sql, [key, box, limit])).map((r) => r.id)
}
