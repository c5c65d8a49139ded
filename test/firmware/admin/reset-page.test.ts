import { execFile } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { verifyCertificate, type SignedCertificate } from '../../../firmware/control/reset.ts'
import { trailText } from '../../helpers/audit.ts'
import { adminBox, secondAdmin, setUpFirstAdmin } from '../../helpers/admin.ts'

const A = { name: 'wang', password: 'Tea-kettle 7 orchids' }
const B = { name: 'mei', password: 'Lotus-pond 4 frogs' }
const TOOL = new URL('../../../provisioning/factory-reset.ts', import.meta.url).pathname

t.test(
  'S13, S5: a factory reset asked for by one administrator and approved by another; the service manager carries it out before the next start',
  async (t) => {
    const box = await adminBox(t, { admin: { loginAttemptsPerMinute: 500 } }, { INVOCATION_ID: 'test' })
    const { secret: aSecret, recovery } = await setUpFirstAdmin(box, A.name, A.password)
    const a = box.client()
    await a.get('/login')
    await a.post('/login', { name: A.name, password: A.password, code: recovery[0]! })
    const { client: b, secret: bSecret } = await secondAdmin(box, a, B)

    const expected = `ERASE ${hostname()}`
    t.match((await a.get('/system/reset')).body, /Ask for a factory reset/)
    t.equal((await a.post('/system/reset/request', { reason: 'end of lease', confirm: 'ERASE', code: '000000' })).status, 400, 'the name typed wrong')
    await a.get('/system/reset')
    const asked = await a.post('/system/reset/request', { reason: 'end of lease', confirm: expected, code: await box.code(aSecret) })
    t.equal(asked.status, 200)
    t.match(asked.body, /A second administrator approves it within the hour/)
    t.notMatch(asked.body, /Approve and erase/, 'not offered to the one who asked')
    await a.get('/system/reset')
    t.equal((await a.post('/system/reset/approve', { confirm: expected, code: '000000' })).status, 409)

    await b.get('/system/reset')
    t.match((await b.get('/system/reset')).body, /Asked by <strong>wang<\/strong>.*end of lease/s)
    t.equal((await b.post('/system/reset/approve', { confirm: expected, code: '000000' })).status, 400, 'a wrong code erases nothing')
    await b.get('/system/reset')
    const approved = await b.post('/system/reset/approve', { confirm: expected, code: await box.code(bSecret) })
    t.equal(approved.status, 200)
    t.match(approved.body, /Factory reset approved/)
    t.same(await box.child.exited, { code: 75, signal: null }, 'the box stops for the service manager')
    t.match(JSON.parse(readFileSync(join(box.dataDir, 'admin', 'factory-reset.json'), 'utf8')), {
      requestedBy: 'wang',
      approvedBy: 'mei',
      reason: 'end of lease',
    })

    // What the unit's ExecStartPre runs, as root, before the next start.
    const run = (args: string[]) =>
      new Promise<{ code: number; out: string }>((resolve) =>
        execFile(process.execPath, [TOOL, ...args], (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr })),
      )
    const done = await run(['--pending', '--config', box.configPath])
    t.equal(done.code, 0, done.out)
    t.same(readdirSync(box.dataDir).sort(), ['deletion-certificate.json', 'final-audit'], 'nothing else left in the data directory')
    const signed = JSON.parse(readFileSync(join(box.dataDir, 'deletion-certificate.json'), 'utf8')) as SignedCertificate
    t.ok(verifyCertificate(signed))
    t.equal(signed.certificate.operator, 'wang, approved by mei (admin page)')
    t.match(trailText(join(box.dataDir, 'final-audit')), /"action":"box\.factory-reset\.approved"/, 'the approval is in the final export')
    t.equal((await run(['--pending', '--config', box.configPath])).code, 0, 'then, at every start, nothing to do')
  },
)
