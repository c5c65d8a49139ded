import { X509Certificate } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ConnectionOptions } from 'node:tls'
import type { BoxEvent } from '../../firmware/events.ts'
import type { Clock } from '../../hal/clock.ts'
import { parseConfig, type Config } from '../../firmware/config/load.ts'
import { MemoryHandoff } from '../../firmware/pipeline/handoff.ts'
import { StagedHandoff, type Stage } from '../../firmware/pipeline/stage.ts'
import { hashPassword } from '../../hal/crypto/password.ts'
import { SubmissionServer } from '../../firmware/submission/server.ts'
import { logSink } from './logs.ts'

type T = { teardown(fn: () => unknown): void }

export function tempDir(t: T, prefix = 'sg-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A real filesystem of `size` (tmpfs, e.g. '256k'), unmounted at teardown: full-disk behaviour without mocks. */
export function tinyDisk(t: T, size: string): string {
  const mnt = join(tempDir(t), 'small')
  mkdirSync(mnt)
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', mnt])
  t.teardown(() => execFileSync('umount', [mnt]))
  return mnt
}

/** Cheapest scrypt cost the config accepts: tests hash many passwords. */
export const TEST_HASH_PARAMS = { ln: 14, r: 8, p: 1 }
export const ACCOUNT = { name: 'firm-statements', password: 'correct horse battery staple 9!' }

let cachedHash: Promise<string> | undefined
export function accountHash(): Promise<string> {
  cachedHash ??= hashPassword(ACCOUNT.password, TEST_HASH_PARAMS)
  return cachedHash
}

/** A config for tests: data in a temp dir, both listeners on free loopback ports, one account. */
export async function testConfig(t: T, overrides: Record<string, unknown> = {}): Promise<Config> {
  const dataDir = tempDir(t)
  const sub = (overrides.submission ?? {}) as Record<string, unknown>
  return parseConfig({
    shutdown: { graceMs: 2000 },
    ...overrides,
    dataDir,
    submission: {
      starttlsPort: 0,
      implicitTlsPort: 0,
      accounts: [{ name: ACCOUNT.name, passwordHash: await accountHash() }],
      ...sub,
    },
  })
}

export interface RunningSubmission {
  server: SubmissionServer
  handoff: MemoryHandoff
  config: Config
  records: Record<string, unknown>[]
  logText: () => string
  starttlsPort: number
  implicitPort: number
  /** What the server emitted (submission.auth/accepted/refused). */
  events: BoxEvent[]
  /** TLS options that trust exactly the box's own certificate. */
  tls: ConnectionOptions
}

export async function startSubmission(
  t: T,
  overrides: Record<string, unknown> = {},
  opts: { clock?: Clock; handoff?: MemoryHandoff; stages?: Stage[] } = {},
): Promise<RunningSubmission> {
  const config = await testConfig(t, overrides)
  const { log, records, text } = logSink()
  const handoff = opts.handoff ?? new MemoryHandoff()
  const chain = opts.stages ? new StagedHandoff(opts.stages, handoff) : handoff
  const events: BoxEvent[] = []
  const server = new SubmissionServer({
    config,
    log,
    handoff: chain,
    clock: opts.clock ?? { now: () => Date.now() },
    events: { emit: (e) => void events.push(e) },
  })
  await server.start()
  t.teardown(() => server.stop())
  const ca = readFileSync(config.submission.tls.certFile || join(config.dataDir, 'tls', 'submission.crt'), 'utf8')
  return {
    server,
    events,
    handoff,
    config,
    records,
    logText: text,
    starttlsPort: server.endpoints.starttls.port,
    implicitPort: server.endpoints.implicitTls.port,
    tls: { ca, servername: config.submission.tls.certFile ? new X509Certificate(ca).subject.replace(/^CN=/, '') : 'localhost' },
  }
}

/** A minimal well-formed message with CRLF line endings. */
export function message(body = 'Your statement is attached.', headers: Record<string, string> = {}): string {
  const h = {
    From: 'statements@bank.example',
    To: 'customer@example.net',
    Subject: 'November statement',
    'Message-ID': `<${Math.random().toString(36).slice(2)}@bank.example>`,
    Date: new Date().toUTCString(),
    ...headers,
  }
  return `${Object.entries(h)
    .map(([k, v]) => `${k}: ${v}`)
    .join('\r\n')}\r\n\r\n${body}\r\n`
}
