import { execFileSync, spawn, type ChildProcess } from 'node:child_process'

type T = { teardown(fn: () => unknown): void }

/**
 * Network namespaces a test makes and removes (the only networks a test may
 * send to besides loopback), joined by veth pairs, each end with its
 * addresses. Names carry the pid so tests running side by side do not meet.
 */
export class Netns {
  readonly names: string[] = []
  readonly #t: T
  readonly #tag: string

  constructor(t: T, tag: string) {
    this.#t = t
    this.#tag = `${tag}${process.pid % 100000}`
  }

  /** A namespace with its loopback up; returns its name. */
  add(role: string): string {
    const name = `${this.#tag}${role}`
    execFileSync('ip', ['netns', 'add', name])
    this.names.push(name)
    this.#t.teardown(() => {
      try {
        execFileSync('ip', ['netns', 'del', name])
      } catch {
        // already gone
      }
    })
    this.ip(name, ['link', 'set', 'lo', 'up'])
    return name
  }

  ip(ns: string, args: string[]): string {
    return execFileSync('ip', ['-n', ns, ...args], { encoding: 'utf8' })
  }

  /** A veth pair between two namespaces, `aDev` in `a` with `aAddrs`, `bDev` in `b` with `bAddrs` (CIDR), both up. */
  link(a: string, aDev: string, aAddrs: string[], b: string, bDev: string, bAddrs: string[]): void {
    execFileSync('ip', [
      'link',
      'add',
      `${aDev}${this.#tag}`.slice(0, 15),
      'netns',
      a,
      'type',
      'veth',
      'peer',
      'name',
      `${bDev}${this.#tag}`.slice(0, 15),
      'netns',
      b,
    ])
    this.ip(a, ['link', 'set', `${aDev}${this.#tag}`.slice(0, 15), 'name', aDev])
    this.ip(b, ['link', 'set', `${bDev}${this.#tag}`.slice(0, 15), 'name', bDev])
    for (const [ns, dev, addrs] of [
      [a, aDev, aAddrs],
      [b, bDev, bAddrs],
    ] as const) {
      for (const addr of addrs) this.ip(ns, ['addr', 'add', addr, 'dev', dev, ...(addr.includes(':') ? ['nodad'] : [])])
      this.ip(ns, ['link', 'set', dev, 'up'])
    }
  }

  /** A process inside a namespace (killed at teardown). */
  spawn(ns: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env })
    this.#t.teardown(() => child.kill('SIGKILL'))
    return child
  }
}

/** Node code run inside a namespace; resolves with its stdout once it exits. */
export function nodeIn(ns: Netns, name: string, code: string, args: string[] = [], timeoutMs = 60_000): Promise<string> {
  // `--` ends node's options: an argument such as a generated password may begin with "-" (one in 64 runs of the
  // provisioning test failed "bad option: -7DaGG3…"); the code still reads it as process.argv[1].
  const child = ns.spawn(name, process.execPath, ['--input-type=module', '-e', code, '--', ...args])
  let out = ''
  let err = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('exit', (code) => {
      clearTimeout(timer)
      if (code === 0) resolve(out)
      else reject(new Error(`node in ${name} exited ${code}: ${err}`))
    })
  })
}

/** A TCP connect scan from inside a namespace: the ports of `host` that accept, of those given. */
export async function scan(ns: Netns, from: string, host: string, ports: number[]): Promise<number[]> {
  const code = `
import { connect } from 'node:net'
const [host, list] = process.argv.slice(1)
const ports = JSON.parse(list)
const open = []
let next = 0
async function worker() {
  while (next < ports.length) {
    const port = ports[next++]
    const ok = await new Promise((r) => {
      const s = connect({ host, port, timeout: 300 })
      s.on('connect', () => (s.destroy(), r(true)))
      s.on('timeout', () => (s.destroy(), r(false)))
      s.on('error', () => r(false))
    })
    if (ok) open.push(port)
  }
}
await Promise.all(Array.from({ length: 256 }, worker))
console.log(JSON.stringify(open.sort((a, b) => a - b)))
`
  return JSON.parse(await nodeIn(ns, from, code, [host, JSON.stringify(ports)])) as number[]
}
