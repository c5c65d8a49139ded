import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DAEMON_ENV, DAEMON_NODE_ARGS } from '../../firmware/runtime.ts'
import { accountHash, ACCOUNT, tempDir } from './box.ts'

export const MAIN = fileURLToPath(new URL('../../firmware/main.ts', import.meta.url))

type T = { teardown(fn: () => unknown): void }

export interface Child {
  proc: ChildProcess
  records: Record<string, unknown>[]
  stderr: () => string
  /** Resolves with the first log record matching `pred`. */
  waitFor(pred: (r: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** Writes a config into a temp data dir for a daemon child process. */
export async function writeDaemonConfig(t: T, extra: Record<string, unknown> = {}): Promise<{ path: string; dataDir: string }> {
  const dataDir = tempDir(t)
  const path = join(dataDir, 'config.json')
  const sub = (extra.submission ?? {}) as Record<string, unknown>
  writeFileSync(
    path,
    JSON.stringify({
      ...extra,
      dataDir,
      submission: { starttlsPort: 0, implicitTlsPort: 0, accounts: [{ name: ACCOUNT.name, passwordHash: await accountHash() }], ...sub },
      // Tests run side by side: each admin page on a port of its own.
      admin: { listen: '127.0.0.1:0', ...((extra.admin ?? {}) as Record<string, unknown>) },
    }),
  )
  return { path, dataDir }
}

/** Runs the daemon as a real child process on the pinned runtime, parsing its JSON log. */
export function spawnDaemon(t: T, args: string[], opts: { coverage?: boolean; env?: Record<string, string>; nodeArgs?: string[] } = {}): Child {
  // Started as npm start and the systemd unit start it (firmware/runtime.ts). A load test can leave
  // the daemon out of coverage: instrumented, its byte loops run several times slower. Not under a
  // service manager unless the test says so (systemd's INVOCATION_ID offers the admin page's restart).
  const dropped = new Set(['INVOCATION_ID', ...(opts.coverage === false ? ['NODE_V8_COVERAGE'] : [])])
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !dropped.has(k)))
  const proc = spawn(process.execPath, [...DAEMON_NODE_ARGS, ...(opts.nodeArgs ?? []), MAIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // #33: every daemon a test runs refuses synchronous C_*Init and C_GenerateKey on its main thread.
    env: { ...base, ...DAEMON_ENV, SG_PKCS11_STRICT: '1', ...opts.env },
  })
  const records: Record<string, unknown>[] = []
  const waiters: { pred: (r: Record<string, unknown>) => boolean; resolve: (r: Record<string, unknown>) => void }[] = []
  let err = ''
  let pending = ''
  proc.stdout.setEncoding('utf8').on('data', (d: string) => {
    pending += d
    const lines = pending.split('\n')
    pending = lines.pop()!
    for (const line of lines) {
      if (!line.trim()) continue
      const r = JSON.parse(line) as Record<string, unknown>
      records.push(r)
      for (const w of [...waiters]) {
        if (!w.pred(r)) continue
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(r)
      }
    }
  })
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })))
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
  })
  return {
    proc,
    records,
    stderr: () => err,
    exited,
    waitFor(pred, timeoutMs = 15_000) {
      const found = records.find(pred)
      if (found) return Promise.resolve(found)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`log record not seen in ${timeoutMs} ms; stderr: ${err}`)), timeoutMs)
        waiters.push({ pred, resolve: (r) => (clearTimeout(timer), resolve(r)) })
        void exited.then(() => setTimeout(() => reject(new Error(`daemon exited; stderr: ${err}`)), 50))
      })
    },
  }
}

/** A nodemailer client of the box's submission port (STARTTLS, the test account, the box's own certificate), closed at teardown. */
export async function submitter(t: T, dataDir: string, port: number) {
  const nodemailer = await import('nodemailer')
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    requireTLS: true,
    auth: { user: ACCOUNT.name, pass: ACCOUNT.password },
    tls: { ca: readFileSync(join(dataDir, 'tls', 'submission.crt')), servername: 'localhost' },
  })
  t.teardown(() => transport.close())
  return transport
}
