import { readFileSync, statSync } from 'node:fs'
import pg from 'pg'
import { parseIntoClientConfig } from 'pg-connection-string'
import type { Config } from '../config/load.ts'
import { boxError } from '../box-errors.ts'
import type { LedgerStore, Param, Row, Tx } from './store.ts'

/** bigint columns (OID 20) as numbers: counts and times stay far below 2^53. */
const bigintAsNumber = (v: string) => Number(v)
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text') =>
    oid === 20 ? bigintAsNumber : (pg.types.getTypeParser(oid, format) as unknown)) as typeof pg.types.getTypeParser,
}

/** `?` placeholders as PostgreSQL's `$1, $2…` (the ledger's SQL has no `?` inside literals). */
function numbered(sql: string): string {
  let n = 0
  return sql.replace(/\?/g, () => `$${++n}`)
}

/**
 * The ledger in the firm's PostgreSQL, shared by several boxes (each writes
 * rows under its own box id): the same SQL as SQLite, over a small pool. The
 * password, if the server wants one, comes from a file only the box reads.
 */
export class PostgresStore implements LedgerStore {
  readonly dialect = 'postgres'
  readonly #pool: pg.Pool
  readonly #sql = new Map<string, string>()

  constructor(pool: pg.Pool) {
    this.#pool = pool
    // An idle connection the server drops must not take the box down.
    pool.on('error', () => {})
  }

  run(sql: string, params: readonly Param[] = []): Promise<number> {
    return this.#query(this.#pool, sql, params).then((r) => r.rowCount ?? 0)
  }

  get<R extends Row>(sql: string, params: readonly Param[] = []): Promise<R | undefined> {
    return this.#query(this.#pool, sql, params).then((r) => (r.rows as R[])[0])
  }

  all<R extends Row>(sql: string, params: readonly Param[] = []): Promise<R[]> {
    return this.#query(this.#pool, sql, params).then((r) => r.rows as R[])
  }

  async transaction<T>(work: (tx: Tx) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect()
    const tx: Tx = {
      run: (sql, params = []) => this.#query(client, sql, params).then((r) => r.rowCount ?? 0),
      get: async <R extends Row>(sql: string, params: readonly Param[] = []): Promise<R | undefined> => {
        const r = await this.#query(client, sql, params)
        return (r.rows as R[])[0]
      },
      all: <R extends Row>(sql: string, params: readonly Param[] = []) => this.#query(client, sql, params).then((r) => r.rows as R[]),
    }
    try {
      await client.query('BEGIN')
      const out = await work(tx)
      await client.query('COMMIT')
      return out
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {})
      throw err
    } finally {
      client.release()
    }
  }

  async *iterate(sql: string, params: readonly Param[] = [], batch = 2000): AsyncIterable<unknown[][]> {
    // A server-side cursor: the export holds one batch, however many rows there are.
    const client = await this.#pool.connect()
    try {
      await client.query('BEGIN READ ONLY')
      await client.query({ text: `DECLARE ledger_export NO SCROLL CURSOR FOR ${this.#numbered(sql)}`, values: params as unknown[] })
      for (;;) {
        const { rows } = await client.query<unknown[]>({ text: `FETCH ${batch} FROM ledger_export`, rowMode: 'array' })
        if (rows.length) yield rows
        if (rows.length < batch) break
      }
      await client.query('COMMIT')
    } finally {
      await client.query('ROLLBACK').catch(() => {})
      client.release()
    }
  }

  close(): Promise<void> {
    return this.#pool.end()
  }

  #query(on: pg.Pool | pg.PoolClient, sql: string, params: readonly Param[]): Promise<pg.QueryResult> {
    return on.query({ text: this.#numbered(sql), values: params as unknown[] })
  }

  #numbered(sql: string): string {
    let out = this.#sql.get(sql)
    if (out === undefined) this.#sql.set(sql, (out = numbered(sql)))
    return out
  }
}

/** Connects to `reports.postgres.url`; the password file must be readable by the box alone. */
export async function openPostgres(c: Config['reports']['postgres']): Promise<PostgresStore> {
  let password: string | undefined
  if (c.passwordFile) {
    const mode = statSync(c.passwordFile).mode & 0o777
    if (mode & 0o077) throw boxError('ESTART_REFUSED', `${c.passwordFile} is readable by others (mode ${mode.toString(8)}); make it 0600`)
    password = readFileSync(c.passwordFile, 'utf8').trim()
  }
  // Parsed here rather than handed over as connectionString, which would override the password.
  const fromUrl = parseIntoClientConfig(c.url)
  const pool = new pg.Pool({ ...fromUrl, ...(password ? { password } : {}), max: 4, types: TYPES, application_name: 'statement-gateway' })
  // Fail at start, with the server's reason, rather than at the first record.
  const client = await pool.connect()
  client.release()
  return new PostgresStore(pool)
}
