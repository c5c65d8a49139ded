import { chmodSync, mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite'

export type Param = string | number | bigint | null | Buffer
export type Row = Record<string, unknown>

/** Statements inside one transaction. */
export interface Tx {
  run(sql: string, params?: readonly Param[]): Promise<number>
  get<R extends Row>(sql: string, params?: readonly Param[]): Promise<R | undefined>
  all<R extends Row>(sql: string, params?: readonly Param[]): Promise<R[]>
}

/**
 * Where the ledger lives: SQLite on the box (`node:sqlite`, built into the
 * pinned Node; no native build) or the firm's PostgreSQL when several boxes
 * share one report (postgres.ts). The SQL is written once, with `?`
 * placeholders and upserts both understand; the dialect only changes the
 * column types of the schema (schema.ts).
 */
export interface LedgerStore extends Tx {
  readonly dialect: 'sqlite' | 'postgres'
  /** Runs `work` in one transaction: all its statements land, or none. */
  transaction<T>(work: (tx: Tx) => Promise<T>): Promise<T>
  /**
   * Rows in batches, so an export of a million rows holds a few thousand; as
   * arrays of values in column order (no property names per row: less garbage).
   */
  iterate(sql: string, params?: readonly Param[], batch?: number): AsyncIterable<unknown[][]>
  close(): Promise<void>
}

/**
 * The ledger in SQLite: WAL (readers — the reports tool, the admin page — do
 * not wait for the writer), synchronous=NORMAL (a power cut may lose the last
 * transactions, never corrupt the file; the ledger catches up from the audit
 * trail at start), statements prepared once.
 */
export class SqliteStore implements LedgerStore {
  readonly dialect = 'sqlite'
  readonly #db: DatabaseSync
  readonly #prepared = new Map<string, StatementSync>()
  /** The transaction in progress: statements from outside it wait, so none slips into it. */
  #busy: Promise<unknown> = Promise.resolve()
  readonly #tx: Tx

  constructor(path: string, options: { readOnly?: boolean } = {}) {
    if (!options.readOnly) mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
    this.#db = new DatabaseSync(path, { readOnly: options.readOnly ?? false })
    // The box's alone (masked recipients and their HMACs); SQLite gives its -wal and -shm files the same mode.
    if (!options.readOnly) chmodSync(path, 0o600)
    this.#db.exec('PRAGMA busy_timeout = 5000')
    if (!options.readOnly) this.#db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL')
    this.#tx = {
      run: (sql, params = []) => Promise.resolve(this.#run(sql, params)),
      get: <R extends Row>(sql: string, params: readonly Param[] = []) =>
        Promise.resolve(this.#statement(sql).get(...(params as SQLInputValue[])) as R | undefined),
      all: <R extends Row>(sql: string, params: readonly Param[] = []) => Promise.resolve(this.#statement(sql).all(...(params as SQLInputValue[])) as R[]),
    }
  }

  /** Runs a script of statements (the schema). */
  exec(sql: string): void {
    this.#db.exec(sql)
  }

  async run(sql: string, params: readonly Param[] = []): Promise<number> {
    await this.#idle()
    return this.#run(sql, params)
  }

  async get<R extends Row>(sql: string, params: readonly Param[] = []): Promise<R | undefined> {
    await this.#idle()
    return this.#tx.get<R>(sql, params)
  }

  async all<R extends Row>(sql: string, params: readonly Param[] = []): Promise<R[]> {
    await this.#idle()
    return this.#tx.all<R>(sql, params)
  }

  transaction<T>(work: (tx: Tx) => Promise<T>): Promise<T> {
    const run = this.#busy.then(async () => {
      this.#db.exec('BEGIN IMMEDIATE')
      try {
        const out = await work(this.#tx)
        this.#db.exec('COMMIT')
        return out
      } catch (err) {
        this.#db.exec('ROLLBACK')
        throw err
      }
    })
    this.#busy = run.catch(() => {})
    return run
  }

  async *iterate(sql: string, params: readonly Param[] = [], batch = 250): AsyncIterable<unknown[][]> {
    await this.#idle()
    // Its own statement: a long export does not hold the prepared one the writer uses.
    const statement = this.#db.prepare(sql)
    statement.setReturnArrays(true)
    let rows: unknown[][] = []
    for (const row of statement.iterate(...(params as SQLInputValue[]))) {
      rows.push(row as unknown as unknown[])
      if (rows.length === batch) {
        yield rows
        rows = []
        // Let the event loop breathe between batches.
        await new Promise((r) => setImmediate(r))
      }
    }
    if (rows.length) yield rows
  }

  async close(): Promise<void> {
    await this.#idle()
    this.#prepared.clear()
    if (this.#db.isOpen) this.#db.close()
  }

  async #idle(): Promise<void> {
    for (let b = this.#busy; ; b = this.#busy) {
      await b
      if (b === this.#busy) return
    }
  }

  #run(sql: string, params: readonly Param[]): number {
    return Number(this.#statement(sql).run(...(params as SQLInputValue[])).changes)
  }

  #statement(sql: string): StatementSync {
    let s = this.#prepared.get(sql)
    if (!s) this.#prepared.set(sql, (s = this.#db.prepare(sql)))
    return s
  }
}
