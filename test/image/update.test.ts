import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { Slots } from '../../firmware/update/slots.ts'
import { trailText } from '../helpers/audit.ts'
import { tempDir } from '../helpers/box.ts'
import { vendorKey } from '../helpers/bundles.ts'
import { submitter, writeDaemonConfig } from '../helpers/daemon.ts'
import { startReceiver, until } from '../helpers/receiver.ts'
import { imageCli as cli, realBundle, slotService } from '../helpers/slots.ts'

t.test('ETSI 5.3 end to end: real bundles of this checkout; a good one is committed, a broken one rolls back by itself, a downgrade is refused', async (t) => {
  const dir = tempDir(t, 'sg-image-')
  const key = vendorKey()
  writeFileSync(join(dir, 'vendor-pub.pem'), key.pub)
  const bundle = (version: string, securityVersion: number, broken = false) => realBundle(dir, key.priv, version, securityVersion, broken)
  const root = join(dir, 'opt')
  t.equal((await cli(['init', bundle('1.0.0', 1), '--root', root, '--trust', join(dir, 'vendor-pub.pem')])).code, 0)

  // The service manager, played by the test: ExecStartPre (image boot), then the daemon from the current slot.
  const rx = await startReceiver(t)
  const cfg = await writeDaemonConfig(t, { delivery: { routes: [{ domain: '*', host: '127.0.0.1', port: rx.port }] } })
  const service = slotService(t, root, cfg.path)
  const start = service.start
  const stop = service.stop
  const port = (log: string) => (service.record(log, 'submission listening') as { starttls: { port: number } }).starttls.port
  const send = async (log: string, n: number) => {
    const smtp = await submitter(t, cfg.dataDir, port(log))
    await smtp.sendMail({ from: 'statements@bank.example', to: `c${n}@example.net`, subject: `statement ${n}`, text: 'statement' })
    await until(() => rx.received.length >= n, 30_000)
  }

  let run = await start()
  t.ok(run.started, 'version 1.0.0 runs from slot a')
  await send(run.log, 1)

  // A good update: installed into slot b on trial, healthy, committed.
  t.match((await cli(['install', bundle('2.0.0', 2), '--root', root, '--config', cfg.path])).out, /version 2\.0\.0 installed in slot b, on trial/)
  await stop()
  run = await start()
  t.ok(run.started)
  await until(() => new Slots(root).state().trial === undefined, 30_000)
  t.match(new Slots(root).state(), { slots: { a: { version: '1.0.0' }, b: { version: '2.0.0' } }, minSecurityVersion: 2, lastUpdate: { outcome: 'committed' } })
  await send(run.log, 2)

  // A broken update: every start fails; the fourth start is the previous slot again, serving mail.
  t.equal((await cli(['install', bundle('3.0.0', 3, true), '--root', root, '--config', cfg.path])).code, 0)
  await stop()
  for (let i = 1; i <= 3; i++) t.notOk((await start()).started, `start ${i} of 3.0.0 fails`)
  run = await start()
  t.ok(run.started, 'then the box is back')
  t.match(run.log, /rolled back to slot b: it failed to start healthy 3 times/)
  t.match(new Slots(root).state(), {
    minSecurityVersion: 2,
    lastUpdate: { version: '3.0.0', outcome: 'rolled back', reason: 'it failed to start healthy 3 times' },
  })
  await send(run.log, 3)

  // Never back to a vulnerable version.
  const down = await cli(['install', join(dir, '1.0.0.sgfw'), '--root', root])
  t.equal(down.code, 1)
  t.match(down.out, /refused: security version 1 is below this box's minimum 2/)
  t.match(new Slots(root).state().lastUpdate, { outcome: 'refused', reason: /below this box's minimum/ })

  // Every step is in the audit trail (the daemon records what the tools did).
  await until(() => trailText(join(cfg.dataDir, 'audit')).includes('"step":"refused"'), 15_000)
  const steps = trailText(join(cfg.dataDir, 'audit'))
    .split('\n')
    .filter((l) => l.includes('"type":"firmware.update"'))
    .map((l) => {
      const r = JSON.parse(l) as { step: string; version: string }
      return `${r.step} ${r.version}`
    })
  t.match(steps.join(', '), /verified 2\.0\.0, installed 2\.0\.0, trial 2\.0\.0, committed 2\.0\.0, .*rolled back 3\.0\.0.*refused/)
  await stop()
})
