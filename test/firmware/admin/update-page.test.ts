import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { Slots } from '../../../firmware/update/slots.ts'
import { trailText } from '../../helpers/audit.ts'
import { accountTool, AdminClient, enrolSecret, freshCodes, oneTimeCodeIn, welcome, withRecovery } from '../../helpers/admin.ts'
import { tempDir } from '../../helpers/box.ts'
import { craftBundle, vendorKey } from '../../helpers/bundles.ts'
import { writeDaemonConfig } from '../../helpers/daemon.ts'
import { until } from '../../helpers/receiver.ts'
import { imageCli, realBundle, slotService } from '../../helpers/slots.ts'

// Three starts of a real box from slots, two bundles built, and TOTP codes that must each be fresh (a
// third code of one authenticator waits for its next 30 s step): 22–130 s measured on a busy 2-core
// machine, over the suite's 120 s per file.
t.setTimeout(300_000)

const A = { name: 'wang', password: 'Tea-kettle 7 orchids' }
const B = { name: 'mei', password: 'Lotus-pond 4 frogs' }

t.test(
  'ETSI 5.3, S5: an update uploaded on the admin page is checked at once, approved by a second administrator, installed before the next start and committed',
  async (t) => {
    const dir = tempDir(t, 'sg-update-page-')
    const key = vendorKey()
    writeFileSync(join(dir, 'vendor-pub.pem'), key.pub)
    const root = join(dir, 'opt')
    t.equal((await imageCli(['init', realBundle(dir, key.priv, '1.0.0', 1), '--root', root, '--trust', join(dir, 'vendor-pub.pem')])).code, 0)
    const cfg = await writeDaemonConfig(t, { admin: { loginAttemptsPerMinute: 500 } })
    const service = slotService(t, root, cfg.path, { INVOCATION_ID: 'test' })
    let run = await service.start()
    t.ok(run.started)
    const url = String(service.record(run.log, 'admin page listening').url)
    const ca = readFileSync(join(cfg.dataDir, 'tls', 'submission.crt'), 'utf8')
    const code = freshCodes()

    // Two administrators: wang (from the setup code) and mei.
    const setup = new AdminClient(url, ca)
    await setup.get('/setup')
    await setup.post('/setup', { code: readFileSync(join(cfg.dataDir, 'admin', 'setup-code'), 'utf8').trim(), name: A.name, password: A.password })
    const aSecret = enrolSecret((await setup.get('/enrol')).body)
    const aRecovery = /<li><code>([0-9a-f-]+)<\/code><\/li>/.exec((await setup.post('/enrol', { code: await code(aSecret) })).body)![1]!
    const a = new AdminClient(url, ca)
    await a.get('/login')
    await a.post('/login', { name: A.name, password: A.password, code: aRecovery })
    // #31: the second administrator is enrolled at the box's console, and sets their own password and authenticator.
    const site = { client: () => new AdminClient(url, ca), code }
    const enrolled = oneTimeCodeIn(await accountTool(cfg.path, 'enrol', B.name))
    const { secret: bSecret, recovery: bRecoveries } = await welcome(site, B.name, enrolled, B.password)
    const b = await withRecovery(site, B.name, B.password, bRecoveries[0]!)

    const page = await a.get('/system/update')
    t.match(page.body, /Running 執行中<\/td><td>1\.0\.0 \(slot a\)/)
    const csrf = /data-csrf="([^"]+)"/.exec(page.body)![1]!
    const upload = (file: string) => a.postBytes('/system/update/upload', readFileSync(file), { 'x-csrf-token': csrf })

    // Signed by another key: refused, with the reason on the page and in the trail; nothing staged.
    const rogue = craftBundle(dir, 'rogue.sgfw', vendorKey().priv, { version: '9.0.0', securityVersion: 9 })
    const refused = await upload(rogue)
    t.equal(refused.status, 400)
    t.match(refused.body, /Refused: no signature by a key this box trusts/)

    await a.get('/system/update')
    const staged = await upload(realBundle(dir, key.priv, '2.0.0', 2))
    t.equal(staged.status, 200, staged.body.slice(0, 300))
    t.match(staged.body, /Version 2\.0\.0 checked and staged/)
    t.notMatch(staged.body, /Approve and install/, 'not offered to the one who uploaded it')
    await b.get('/system/update')
    const approved = await b.post('/system/update/approve', { code: await code(bSecret) })
    t.match(approved.body, /Version 2\.0\.0 approved: the box restarts into it, on trial/)
    await until(() => run.child.exitCode !== null, 30_000)
    t.equal(run.child.exitCode, 75, 'the box stops for the service manager')

    run = await service.start()
    t.match(run.log, /version 2\.0\.0 from the admin page installed in slot b, on trial/)
    t.ok(run.started)
    await until(() => new Slots(root).state().trial === undefined, 30_000)
    t.match(new Slots(root).state(), { slots: { b: { version: '2.0.0' } }, minSecurityVersion: 2, lastUpdate: { outcome: 'committed' } })
    await until(() => trailText(join(cfg.dataDir, 'audit')).includes('"step":"committed"'), 15_000)
    const steps = trailText(join(cfg.dataDir, 'audit'))
      .split('\n')
      .filter((l) => l.includes('"type":"firmware.update"'))
      .map((l) => (JSON.parse(l) as { step: string }).step)
    t.same(steps, ['received', 'refused', 'received', 'verified', 'approved', 'verified', 'installed', 'trial', 'committed'])

    // #31: a replay of the running 2.0.0 is a downgrade: staged as one, approved only with the downgrade ticked.
    // The restarted box listens on a port of its own again.
    const url2 = String(service.record(run.log, 'admin page listening').url)
    const again = new AdminClient(url2, ca)
    await again.get('/login')
    await again.post('/login', { name: A.name, password: A.password, code: await code(aSecret) })
    const csrf2 = /data-csrf="([^"]+)"/.exec((await again.get('/system/update')).body)![1]!
    const replay = await again.postBytes('/system/update/upload', readFileSync(join(dir, '2.0.0.sgfw')), { 'x-csrf-token': csrf2 })
    t.equal(replay.status, 200, replay.body.slice(0, 300))
    t.match(replay.body, /A downgrade: 2\.0\.0 is not newer than the running 2\.0\.0/)
    const b2 = await withRecovery({ client: () => new AdminClient(url2, ca) }, B.name, B.password, bRecoveries[1]!)
    t.match((await b2.get('/system/update')).body, /approve the downgrade 核准降版/)
    const bCode = await code(bSecret)
    const unticked = await b2.post('/system/update/approve', { code: bCode })
    t.equal(unticked.status, 400)
    t.match(unticked.body, /This is a downgrade: approve the downgrade explicitly/)
    // The refusal came before the code was checked: the same code is still unused.
    const ticked = await b2.post('/system/update/approve', { code: bCode, downgrade: 'yes' })
    t.match(ticked.body, /Version 2\.0\.0 approved: the box restarts into it, on trial/)
    await until(() => run.child.exitCode !== null, 30_000)
    run = await service.start()
    t.match(run.log, /version 2\.0\.0 from the admin page installed in slot a, on trial/, 'installed because a second administrator approved the downgrade')
    t.match(trailText(join(cfg.dataDir, 'audit')), /"step":"approved".*a downgrade, uploaded by wang, approved by mei/)
    await service.stop()
  },
)
