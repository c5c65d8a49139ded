import { parentPort } from 'node:worker_threads'
import si from 'systeminformation'

/*
 * The hardware view's readings (firmware/admin/system.ts), on a thread of its own (#35):
 * systeminformation runs several commands synchronously (execSync for the NICs' DHCP and
 * connection names, the OS and CPU details), each a stall of 10–70 ms wherever it runs —
 * on the box's event loop that held up submission and delivery every time the dashboard
 * or a monitoring scrape asked for a fresh reading.
 */
parentPort!.on('message', () => {
  Promise.all([si.system(), si.currentLoad(), si.mem(), si.networkInterfaces()]).then(
    ([system, load, mem, nics]) =>
      parentPort!.postMessage({
        system: { manufacturer: system.manufacturer, model: system.model, serial: system.serial },
        uptimeSeconds: si.time().uptime,
        cpuLoadPercent: load.currentLoad,
        memory: { total: mem.total, active: mem.active },
        nics: (Array.isArray(nics) ? nics : [nics]).map((n) => ({ iface: n.iface, mac: n.mac, operstate: n.operstate, speed: n.speed })),
      }),
    (err: unknown) => parentPort!.postMessage({ error: err instanceof Error ? err.message : String(err) }),
  )
})
