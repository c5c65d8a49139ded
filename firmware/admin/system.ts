import { readFile, statfs } from 'node:fs/promises'
import { join } from 'node:path'
import { networkInterfaces } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { Clock } from '../../hal/clock.ts'

/**
 * The box as the dashboard shows it (S8, S11): hardware, load, memory, the
 * data directory's disk, and every NIC with its addresses and link state.
 * Read with systeminformation (the product card's package) in the
 * background at most every 15 s, so a page never waits on /proc and /sys,
 * and on a thread of its own (system-worker.ts: systeminformation runs
 * commands synchronously, which would stall the box's event loop).
 */
export interface SystemView {
  at: number
  model: string
  serial: string
  uptimeSeconds: number
  cpuLoadPercent: number
  memory: { total: number; used: number }
  dataDisk: { total: number; free: number }
  nics: { name: string; mac: string; addresses: string[]; state: string; speedMbps: number | null }[]
  /** S8: what provisioning recorded — where the box is, whose it is, what for, and what it listens on. */
  inventory?: Inventory
}

export interface Inventory {
  provisionedAt: string
  location: string
  owner: string
  purpose: string
  ports: { name: string; address: string; port: number }[]
}

const REFRESH_MS = 15_000

/** What system-worker.ts reads with systeminformation. */
interface HardwareReading {
  system: { manufacturer: string; model: string; serial: string }
  uptimeSeconds: number
  cpuLoadPercent: number
  memory: { total: number; active: number }
  nics: { iface: string; mac: string; operstate: string; speed: number | null }[]
}

export class SystemInfo {
  readonly #dataDir: string
  readonly #clock: Clock
  #view: SystemView | undefined
  #reading: Promise<void> | undefined
  #worker: Worker | undefined

  constructor(o: { dataDir: string; clock: Clock }) {
    this.#dataDir = o.dataDir
    this.#clock = o.clock
  }

  /** The last reading (undefined until the first is done); a new one is started when it is old. */
  current(): SystemView | undefined {
    if (!this.#view || this.#clock.now() - this.#view.at > REFRESH_MS) void this.refresh()
    return this.#view
  }

  /** Reads the box now (one reading at a time). */
  refresh(): Promise<void> {
    this.#reading ??= this.#read()
      .then((v) => void (this.#view = v))
      .catch(() => undefined)
      .finally(() => (this.#reading = undefined))
    return this.#reading
  }

  /** The worker that reads the hardware, started at the first reading; it does not keep the process alive. */
  #thread(): Worker {
    if (!this.#worker) {
      const worker = new Worker(new URL('./system-worker.ts', import.meta.url))
      worker.unref()
      worker.on('exit', () => this.#worker === worker && (this.#worker = undefined))
      this.#worker = worker
    }
    return this.#worker
  }

  /** One reading from the worker (or its failure). */
  #ask(): Promise<HardwareReading> {
    const worker = this.#thread()
    return new Promise((resolve, reject) => {
      const done = (m: HardwareReading | { error: string }) => {
        worker.off('error', reject)
        if ('error' in m) reject(new Error(m.error))
        else resolve(m)
      }
      worker.once('message', done)
      worker.once('error', reject)
      worker.postMessage('read')
    })
  }

  async #read(): Promise<SystemView> {
    const [hw, disk] = await Promise.all([this.#ask(), statfs(this.#dataDir)])
    const { system, nics } = hw
    // Every address of a NIC (aliases too: the egress addresses), which systeminformation lists one of.
    const all = networkInterfaces()
    const inventory = await readFile(join(this.#dataDir, 'inventory.json'), 'utf8').then(
      (t) => JSON.parse(t) as Inventory,
      () => undefined,
    )
    return {
      ...(inventory ? { inventory } : {}),
      at: this.#clock.now(),
      model: [system.manufacturer, system.model].filter(Boolean).join(' '),
      serial: system.serial,
      uptimeSeconds: hw.uptimeSeconds,
      cpuLoadPercent: hw.cpuLoadPercent,
      memory: { total: hw.memory.total, used: hw.memory.active },
      dataDisk: { total: disk.blocks * disk.bsize, free: disk.bavail * disk.bsize },
      nics: nics.map((n) => ({
        name: n.iface,
        mac: n.mac,
        addresses: (all[n.iface] ?? []).map((a) => a.address),
        state: n.operstate,
        speedMbps: typeof n.speed === 'number' && n.speed > 0 ? n.speed : null,
      })),
    }
  }
}
