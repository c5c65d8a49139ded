import type { LedgerStore } from './store.ts'

/**
 * The ledger's tables (M8, M9, S6). Every row carries the box id, so several
 * boxes can share one PostgreSQL. No content, no subject, no address in
 * clear: a recipient is its HMAC (the audit trail's, under the HSM key) and
 * its masked form.
 *
 * - `statements`: one row per mail the firm submitted (queue id), with the
 *   firm's statement id, class and batch, the account and the signing certificate.
 * - `recipients`: one row per statement and recipient, with a time for each
 *   state it reached.
 * - `daily` and `daily_detail`: counts per submission day, batch, account and
 *   class, kept current with the rows, so a month's summary reads a few
 *   hundred rows rather than millions; the detail holds bounces by reason,
 *   refusals by code and the delivery latency histogram.
 * - `refused_tags`: the tags of a mail the policy refused, until its refusal is counted.
 * - `early_records`: delivery records that reached the trail before the mail's acceptance, until it does.
 * - `outbox`: webhook events not yet taken by the firm's endpoint.
 * - `unmatched_reports`: reports no token tied to a statement (#30), for a person to look at.
 * - `ledger_meta`: the last audit record applied (the ledger catches up from there).
 */
const TABLES = `
CREATE TABLE IF NOT EXISTS ledger_meta (
  box TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY (box, key));
CREATE TABLE IF NOT EXISTS statements (
  box TEXT NOT NULL, id TEXT NOT NULL,
  statement_id TEXT, statement_class TEXT, batch TEXT, account TEXT, day TEXT,
  accepted_at INT8, bytes INT8, recipients INT8, cert_serial TEXT,
  PRIMARY KEY (box, id));
CREATE INDEX IF NOT EXISTS statements_by_statement_id ON statements (statement_id);
CREATE INDEX IF NOT EXISTS statements_by_day ON statements (day);
CREATE TABLE IF NOT EXISTS recipients (
  box TEXT NOT NULL, id TEXT NOT NULL, idx INT8 NOT NULL,
  rcpt_hash TEXT, rcpt_mask TEXT NOT NULL, state TEXT NOT NULL,
  day TEXT NOT NULL, accepted_at INT8 NOT NULL,
  delivered_at INT8, mx TEXT, source_ip TEXT, tls TEXT,
  deferrals INT8 NOT NULL DEFAULT 0, last_reply TEXT,
  bounced_at INT8, bounce_reason TEXT, bounce_hard INT8,
  expired_at INT8, removed_at INT8,
  opened_at INT8, open_agent TEXT, opens INT8 NOT NULL DEFAULT 0,
  clicked_at INT8, clicks INT8 NOT NULL DEFAULT 0,
  read_at INT8,
  paper_owed_at INT8, paper_reason TEXT,
  PRIMARY KEY (box, id, idx));
CREATE INDEX IF NOT EXISTS recipients_by_hash ON recipients (rcpt_hash);
CREATE INDEX IF NOT EXISTS recipients_by_day ON recipients (day);
CREATE TABLE IF NOT EXISTS daily (
  box TEXT NOT NULL, day TEXT NOT NULL, batch TEXT NOT NULL, account TEXT NOT NULL, class TEXT NOT NULL,
  submitted INT8 NOT NULL DEFAULT 0, recipients INT8 NOT NULL DEFAULT 0, refused INT8 NOT NULL DEFAULT 0,
  delivered INT8 NOT NULL DEFAULT 0, deferred INT8 NOT NULL DEFAULT 0,
  bounced_hard INT8 NOT NULL DEFAULT 0, bounced_soft INT8 NOT NULL DEFAULT 0,
  expired INT8 NOT NULL DEFAULT 0, removed INT8 NOT NULL DEFAULT 0,
  opened INT8 NOT NULL DEFAULT 0, opened_by_proxy INT8 NOT NULL DEFAULT 0, clicked INT8 NOT NULL DEFAULT 0,
  read INT8 NOT NULL DEFAULT 0, paper_owed INT8 NOT NULL DEFAULT 0,
  PRIMARY KEY (box, day, batch, account, class));
CREATE TABLE IF NOT EXISTS daily_detail (
  box TEXT NOT NULL, day TEXT NOT NULL, batch TEXT NOT NULL, account TEXT NOT NULL, class TEXT NOT NULL,
  kind TEXT NOT NULL, key TEXT NOT NULL, n INT8 NOT NULL DEFAULT 0,
  PRIMARY KEY (box, day, batch, account, class, kind, key));
CREATE TABLE IF NOT EXISTS refused_tags (
  box TEXT NOT NULL, id TEXT NOT NULL, statement_class TEXT, batch TEXT,
  PRIMARY KEY (box, id));
CREATE TABLE IF NOT EXISTS early_records (
  box TEXT NOT NULL, id TEXT NOT NULL, seq INT8 NOT NULL, day TEXT NOT NULL, record TEXT NOT NULL,
  PRIMARY KEY (box, id, seq));
CREATE TABLE IF NOT EXISTS outbox (
  box TEXT NOT NULL, url TEXT NOT NULL, event_id TEXT NOT NULL,
  ordering TEXT NOT NULL, pos INT8 NOT NULL, payload TEXT NOT NULL,
  created_at INT8 NOT NULL, next_at INT8 NOT NULL, attempts INT8 NOT NULL DEFAULT 0, last_error TEXT,
  PRIMARY KEY (box, url, event_id));
CREATE INDEX IF NOT EXISTS outbox_by_order ON outbox (box, url, ordering, pos);
CREATE INDEX IF NOT EXISTS outbox_by_pos ON outbox (box, url, pos);
CREATE TABLE IF NOT EXISTS unmatched_reports (
  box TEXT NOT NULL, seq INT8 NOT NULL, at INT8 NOT NULL, day TEXT NOT NULL, client TEXT NOT NULL,
  kind TEXT NOT NULL, status TEXT NOT NULL, category TEXT NOT NULL, reply TEXT NOT NULL, hint TEXT,
  PRIMARY KEY (box, seq));
CREATE INDEX IF NOT EXISTS unmatched_by_at ON unmatched_reports (box, at);
`

/**
 * Columns added after a ledger may already exist: added at start when missing (the
 * ledger is also rebuilt from the trail by `npm run reports -- rebuild`).
 */
const ADDED: readonly (readonly [table: string, column: string, type: string])[] = [
  // #17: the statement's Message-ID (#30: a hint for a person, never a tie).
  ['statements', 'message_id', 'TEXT'],
  // #30: its hash, which an unmatched report's hint is compared with.
  ['statements', 'message_id_hint', 'TEXT'],
  // #30: recipients delivered and then bounced (a report that came back): counted in both, so
  // what is still pending is recipients − delivered − bounced + returned.
  ['daily', 'returned', 'INT8 NOT NULL DEFAULT 0'],
]

/** Creates the tables (idempotent): INT8 is SQLite's INTEGER affinity and PostgreSQL's bigint. */
export async function createSchema(store: LedgerStore & { exec?(sql: string): void }): Promise<void> {
  if (store.exec) store.exec(TABLES)
  else for (const statement of TABLES.split(';')) if (statement.trim()) await store.run(statement)
  for (const [table, column, type] of ADDED) {
    try {
      await store.run(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`)
    } catch (err) {
      if (!/duplicate column|already exists/i.test((err as Error).message)) throw err
    }
  }
  await store.run('CREATE INDEX IF NOT EXISTS statements_by_message_id ON statements (message_id)')
  await store.run('CREATE INDEX IF NOT EXISTS statements_by_message_id_hint ON statements (message_id_hint)')
}

/** The state columns a recipient's row moves through; `accepted` until one is reached. */
export type RecipientState = 'accepted' | 'delivered' | 'bounced' | 'expired' | 'removed'
