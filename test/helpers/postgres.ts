import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { userInfo } from 'node:os'
import { tempDir } from './box.ts'

type T = { teardown(fn: () => unknown): void }

/** Debian's PostgreSQL server binaries (the `postgresql` package), newest version. */
function pgBin(tool: string): string {
  const versions = readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a))
  return join('/usr/lib/postgresql', versions[0]!, 'bin', tool)
}

/**
 * A real PostgreSQL server for one test, listening only on a Unix socket in a
 * temp directory, with a password (SCRAM) for the user `gateway`. Runs as the
 * `postgres` system user when the tests run as root (the server refuses root).
 */
export async function startPostgres(t: T): Promise<{ url: string; passwordFile: string; socketDir: string }> {
  const dir = tempDir(t, 'sg-pg-')
  const data = join(dir, 'data')
  const sockets = join(dir, 'run')
  mkdirSync(sockets)
  const password = 'pg-test-pass-1!'
  const pwfile = join(dir, 'pw')
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 })
  const root = userInfo().uid === 0
  const as = (cmd: string[]) => (root ? ['runuser', '-u', 'postgres', '--', ...cmd] : cmd)
  if (root) {
    const pg = spawnSync('id', ['-u', 'postgres']).stdout.toString().trim()
    for (const p of [dir, sockets, pwfile]) chownSync(p, Number(pg), Number(pg))
  }
  const initdb = as([pgBin('initdb'), '-D', data, '-U', 'gateway', '--auth=scram-sha-256', `--pwfile=${pwfile}`, '-E', 'UTF8', '--no-sync'])
  const init = spawnSync(initdb[0]!, initdb.slice(1), { encoding: 'utf8' })
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr}`)
  const cmd = as([pgBin('postgres'), '-D', data, '-k', sockets, '-c', 'listen_addresses=', '-c', 'fsync=off', '-c', 'max_connections=40'])
  const server = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  server.stderr.setEncoding('utf8').on('data', (d: string) => (log += d))
  for (let i = 0; i < 200 && !existsSync(join(sockets, '.s.PGSQL.5432')); i++) await sleep(50)
  if (!existsSync(join(sockets, '.s.PGSQL.5432'))) throw new Error(`postgres did not start: ${log}`)
  // The socket is there before the server takes connections ("FATAL: the database system is starting up" failed
  // createdb once in check:fresh): wait until pg_isready says it accepts them.
  for (let i = 0; i < 200 && spawnSync(pgBin('pg_isready'), ['-q', '-h', sockets]).status !== 0; i++) await sleep(50)
  if (spawnSync(pgBin('pg_isready'), ['-q', '-h', sockets]).status !== 0) throw new Error(`postgres does not accept connections: ${log}`)
  // SIGINT to the postmaster itself (runuser in between does not pass it on): fast shutdown.
  const postmaster = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0])
  t.teardown(async () => {
    if (server.exitCode !== null) return
    const exited = new Promise((r) => server.once('exit', r))
    process.kill(postmaster, 'SIGINT')
    await exited
  })
  // A database for the ledger; the box's password file is its own copy, 0600.
  const boxPw = join(tempDir(t), 'pg-password')
  writeFileSync(boxPw, `${password}\n`, { mode: 0o600 })
  chmodSync(boxPw, 0o600)
  const psql = spawnSync(pgBin('psql'), ['-h', sockets, '-U', 'gateway', '-d', 'postgres', '-c', 'CREATE DATABASE ledger'], {
    encoding: 'utf8',
    env: { ...process.env, PGPASSWORD: password },
  })
  if (psql.status !== 0) throw new Error(`createdb failed: ${psql.stderr}`)
  return { url: `postgresql://gateway@localhost/ledger?host=${encodeURIComponent(sockets)}`, passwordFile: boxPw, socketDir: sockets }
}
