import { readFile, statfs } from 'node:fs/promises'
import { join } from 'node:path'
import { networkInterfaces } from 'node:os'
import si from 'systeminformation'
import type { Clock } from '../../hal/clock.ts'

/**
 * The box as the dashboard shows it (S8, S11): hardware, load, memory, the
 * data directory's disk, and every NIC with its addresses and link state.
 * Read with systeminformation (the product card's package) in the
 * background at most every 15 s, so a page never waits on /proc and /sys.
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

export class SystemInfo {
  readonly #dataDir: string
  readonly #clock: Clock
  #view: SystemView | undefined
  #reading: Promise<void> | undefined

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

  async #read(): Promise<SystemView> {
    const [system, load, mem, nics, disk] = await Promise.all([si.system(), si.currentLoad(), si.mem(), si.networkInterfaces(), statfs(this.#dataDir)])
    const list = Array.isArray(nics) ? nics : [nics]
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
      uptimeSeconds: si.time().uptime,
      cpuLoadPercent: load.currentLoad,
      memory: { total: mem.total, used: mem.active },
      dataDisk: { total: disk.blocks * disk.bsize, free: disk.bavail * disk.bsize },
      nics: list.map((n) => ({
        name: n.iface,
        mac: n.mac,
        addresses: (all[n.iface] ?? []).map((a) => a.address),
        state: n.operstate,
        speedMbps: typeof n.speed === 'number' && n.speed > 0 ? n.speed : null,
      })),
    }
  }
}
