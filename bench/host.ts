import { readFileSync } from 'node:fs'
import { connect, createServer, type AddressInfo } from 'node:net'
import { Hsm } from '../hal/hsm/index.ts'

/*
 * The benchmarks' view of this machine: free loopback ports, waiting for a
 * listener, CPU and memory of processes from /proc, a SoftHSM2 token.
 */

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A loopback port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const { port } = s.address() as AddressInfo
  await new Promise((r) => s.close(r))
  return port
}

/** Resolves once something accepts connections on the loopback port. */
export async function waitPort(port: number, ms = 30_000): Promise<void> {
  const until = Date.now() + ms
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)))
      s.on('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > until) throw new Error(`nothing listens on ${port}`)
    await sleep(100)
  }
}

/** CPU seconds the whole machine spent busy (all processes, kernel included), from /proc/stat. */
export function machineBusySeconds(): number {
  const [, ...f] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/)
  const [user, nice, system, , , irq, softirq, steal] = f.map(Number)
  return (user! + nice! + system! + irq! + softirq! + steal!) / 100
}

/** CPU seconds (user + system) and resident memory of one process. */
export function procStat(pid: number): { cpuSeconds: number; rss: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticks = Number(fields[11]) + Number(fields[12]) // utime + stime (fields 14, 15)
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024
  return { cpuSeconds: ticks / 100, rss }
}

/** A SoftHSM2 development token in `devDir` (made on first use), opened with `sessions` sessions. */
export async function benchHsm(devDir: string, sessions = 4): Promise<Hsm> {
  const hsm = new Hsm({ module: '', tokenLabel: 'bench', pinFile: '', sessions, reconnectIntervalMs: 1000, devDir, clock: { now: () => Date.now() } })
  await hsm.open()
  return hsm
}
