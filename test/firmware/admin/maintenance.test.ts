import { join } from 'node:path'
import t from 'tap'
import { pendingRestart } from '../../../firmware/admin/maintenance.ts'
import { openBackup } from '../../../firmware/control/backup.ts'
import { parseConfig } from '../../../firmware/config/load.ts'
import { trailText } from '../../helpers/audit.ts'
import { adminBox, setUpFirstAdmin, type AdminBox } from '../../helpers/admin.ts'
import { until } from '../../helpers/receiver.ts'

const A = { name: 'wang', password: 'Tea-kettle 7 orchids' }
const PASS = 'second site, rack 14, 2026'

/** The first administrator, logged in with a recovery code (the next TOTP step stays free for the action under test). */
async function admin(box: AdminBox) {
  const { secret, recovery } = await setUpFirstAdmin(box, A.name, A.password)
  const c = box.client()
  await c.get('/login')
  t.equal((await c.post('/login', { name: A.name, password: A.password, code: recovery[0]! })).status, 303)
  return { c, secret }
}

t.test('pendingRestart: keys of the version in force the running box does not run yet, only those that wait for a start', async (t) => {
  const running = parseConfig({ submission: { maxClients: 10 }, delivery: { retrySeconds: [60] } })
  t.same(pendingRestart(running, { submission: { maxClients: 10 }, delivery: { retrySeconds: [60] } }), [])
  t.same(pendingRestart(running, { submission: { maxClients: 20 }, delivery: { retrySeconds: [5] }, admin: { listen: '127.0.0.1:9' } }), [
    'submission.maxClients',
    'admin.listen',
  ])
})

t.test('S12: the backup button gives a bundle that opens with the passphrase; with no service manager there is no restart', async (t) => {
  const box = await adminBox(t)
  const { c, secret } = await admin(box)
  const page = await c.get('/config')
  t.match(page.body, /No service manager runs this box/)
  t.notMatch(page.body, /action="\/restart"/)
  t.equal((await c.post('/restart', { reason: 'x', code: '000000' })).status, 409)

  t.equal((await c.post('/config/backup', { passphrase: PASS, again: `${PASS}.`, code: '000000' })).status, 400, 'two different passphrases')
  await c.get('/config')
  t.equal((await c.post('/config/backup', { passphrase: PASS, again: PASS, code: '000000' })).status, 400, 'a wrong code')
  await c.get('/config')
  const r = await c.post('/config/backup', { passphrase: PASS, again: PASS, code: await box.code(secret) })
  t.equal(r.status, 200)
  t.match(r.headers['content-disposition'], /^attachment; filename="sg-config-.+\.sgbk"$/)
  t.equal(r.headers['cache-control'], 'no-store')
  const payload = openBackup(Buffer.from(r.body), PASS)
  t.equal(payload.inForce, 1)
  t.match(payload.adminUsers, { users: [{ name: A.name }] }, 'the administrators, hashed')
  t.notMatch(r.body, /wang/, 'nothing readable')
  await until(() => trailText(join(box.dataDir, 'audit')).includes('"action":"config.backup"'), 10_000)
  t.pass('the download is in the audit trail')
})

t.test('S7: under a service manager, a key that waits for a start is shown, and the restart stops the box gracefully for it to be started again', async (t) => {
  const box = await adminBox(t, { admin: { allowSelfApproval: true } }, { INVOCATION_ID: 'test' })
  const { c, secret } = await admin(box)
  t.match((await c.get('/config')).body, /Every key of the version in force is in effect/)
  const proposed = await c.post('/config/propose', { 'c:submission.maxClients': '77', reason: 'month-end peak' })
  t.equal(proposed.status, 303)
  const path = proposed.headers.location as string
  const hash = /name="hash" value="([0-9a-f]{64})"/.exec((await c.get(path)).body)![1]!
  t.match((await c.post(`${path}/approve`, { hash, code: await box.code(secret) })).body, /Applied as version 2\. 1 key\(s\) take effect at the next restart\./)
  const page = await c.get('/config')
  t.match(page.body, /Waiting for a restart 待重新啟動後生效: submission\.maxClients/)
  t.equal((await c.post('/restart', { reason: 'apply maxClients', code: '000000' })).status, 400, 'a wrong code restarts nothing')
  await c.get('/config')
  // The step after the approval's: the freshCodes helper waits for it when needed.
  const done = await c.post('/restart', { reason: 'apply maxClients', code: await box.code(secret) })
  t.equal(done.status, 200)
  t.match(done.body, /Restart requested/)
  t.same(await box.child.exited, { code: 75, signal: null }, 'EX_TEMPFAIL: the unit starts it again')
  t.ok(box.child.records.some((r) => r.msg === 'stopped' && r.exitCode === 75))
  t.match(trailText(join(box.dataDir, 'audit')), /"action":"box\.restart".*"reason":"apply maxClients"/)
})
