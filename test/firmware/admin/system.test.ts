import { statfsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { SystemInfo } from '../../../firmware/admin/system.ts'
import { tempDir } from '../../helpers/box.ts'

t.test('S8, S11: the box as the dashboard shows it, read in the background and kept 15 s', async (t) => {
  const dataDir = tempDir(t)
  const clock = { value: Date.now(), now: () => clock.value }
  const info = new SystemInfo({ dataDir, clock })
  t.equal(info.current(), undefined, 'nothing until the first reading is done: a page never waits for it')
  await info.refresh()
  const v = info.current()!
  t.ok(v.memory.total > 0 && v.memory.used > 0 && v.memory.used <= v.memory.total)
  const fs = statfsSync(dataDir)
  t.equal(v.dataDisk.total, fs.blocks * fs.bsize, "the data directory's own disk")
  t.ok(v.uptimeSeconds > 0)
  t.ok(v.cpuLoadPercent >= 0 && v.cpuLoadPercent <= 100)
  const lo = v.nics.find((n) => n.name === 'lo')
  t.ok(lo?.addresses.includes('127.0.0.1'), 'every address of a NIC, from the kernel')
  t.equal(info.current(), v, 'the same reading within 15 s')
  clock.value += 16_000
  t.equal(info.current(), v, 'an old reading is shown while a new one is taken')
  await info.refresh()
  t.not(info.current(), v, 'then the new one')
})

t.test('S8: the inventory provisioning wrote is part of the reading, and the dashboard shows it', async (t) => {
  const dataDir = tempDir(t)
  const info = new SystemInfo({ dataDir, clock: { now: () => Date.now() } })
  await info.refresh()
  t.equal(info.current()!.inventory, undefined, 'not provisioned yet')
  const { parseConfig } = await import('../../../firmware/config/load.ts')
  const { dashboardPage } = await import('../../../firmware/admin/views.ts')
  const viewer = { user: 'wang', role: 'admin' as const, csrf: 'x' }
  t.match(dashboardPage(viewer, {}, parseConfig({ dataDir }), info.current()).toString(), /Not provisioned: run npm run provision/)
  writeFileSync(
    join(dataDir, 'inventory.json'),
    JSON.stringify({
      provisionedAt: '2026-11-26T10:00:00.000Z',
      location: 'Taipei DC2, rack 14 <b>',
      owner: 'IT Operations',
      purpose: 'e-statements',
      ports: [{ name: 'submission STARTTLS', address: '10.50.0.5', port: 587 }],
    }),
  )
  await info.refresh()
  t.match(info.current()!.inventory, { location: 'Taipei DC2, rack 14 <b>', ports: [{ port: 587 }] })
  const page = dashboardPage(viewer, {}, parseConfig({ dataDir }), info.current()).toString()
  t.match(page, /Taipei DC2, rack 14 &lt;b&gt;/, 'escaped')
  t.match(page, /10\.50\.0\.5:587/)
})
