import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import nodemailer from 'nodemailer'
import t from 'tap'
import { adminBox, secondAdmin, setUpFirstAdmin } from '../../helpers/admin.ts'
import { ACCOUNT } from '../../helpers/box.ts'
import { submitter } from '../../helpers/daemon.ts'
import { startReceiver } from '../../helpers/receiver.ts'

/**
 * S5, S7 on the admin page against the real daemon: a change proposed by one
 * administrator, refused to its author, approved by a second with TOTP, in
 * force without a restart; then rolled back the same way.
 */
const A = { name: 'wang', password: 'Tea-kettle 7 orchids' }
const B = { name: 'mei', password: 'Lotus-pond 4 frogs' }

t.test('four eyes on the configuration: propose, refused to the author, approved by another with TOTP, applied at once, rolled back', async (t) => {
  const rx = await startReceiver(t)
  const box = await adminBox(t, { admin: { loginAttemptsPerMinute: 500 }, delivery: { routes: [{ domain: '*', host: '127.0.0.1', port: rx.port }] } })
  // Logins with recovery codes here: each approval then takes the next TOTP step at once.
  const withRecovery = async (who: { name: string; password: string }, recovery: string) => {
    const c = box.client()
    await c.get('/login')
    t.equal((await c.post('/login', { name: who.name, password: who.password, code: recovery })).status, 303)
    return c
  }
  const { secret: aSecret, recovery: aRecovery } = await setUpFirstAdmin(box, A.name, A.password)
  const a = await withRecovery(A, aRecovery[0]!)
  const { client: b, secret: bSecret } = await secondAdmin(box, a, B)

  const smtp = await submitter(t, box.dataDir, box.submissionPort)
  const send = () =>
    smtp.sendMail({ from: 'statements@bank.example', to: 'c@example.net', subject: 's', text: 'statement' }).then(
      () => 'accepted',
      (err: { responseCode?: number; response?: string }) => `${err.responseCode} ${err.response}`,
    )
  t.equal(await send(), 'accepted', 'the policy in force lets the mail through')

  // A proposes: a profile for the test account whose domains do not include the sender's.
  const form = await a.get('/config')
  t.match(form.body, /name="c:delivery.bandwidthBitsPerSecond"/, 'a form generated from the schema')
  t.notMatch(form.body, /\$scrypt\$/, 'no password hash shown')
  const profiles = JSON.stringify([{ name: 'firm', accounts: [ACCOUNT.name], domains: ['firm.example'] }])
  const proposed = await a.post('/config/propose', { 'c:policy.profiles': profiles, reason: 'only firm.example may send (ticket 5120)' })
  t.equal(proposed.status, 303)
  const path = proposed.headers.location as string
  const shown = await a.get(path)
  t.match(shown.body, /policy\.profiles/, 'the diff names the key')
  t.match(shown.body, /at once/)
  t.notMatch(shown.body, /Approve and apply/, 'its author is not offered approval')
  const hash = /name="hash" value="([0-9a-f]{64})"/.exec((await b.get(path)).body)?.[1]
  t.ok(hash, 'the second administrator is')
  await a.get(path)
  const self = await a.post(`${path}/approve`, { hash: hash!, code: '000000' })
  t.equal(self.status, 409)
  t.match(self.body, /second administrator, not by its author/)

  await b.get(path)
  t.equal((await b.post(`${path}/approve`, { hash: hash!, code: '000000' })).status, 409, 'a wrong code does not approve')
  await b.get(path)
  const approved = await b.post(`${path}/approve`, { hash: hash!, code: await box.code(bSecret) })
  t.equal(approved.status, 200)
  t.match(approved.body, /Applied as version 2\./)
  t.match(await send(), /^550 550 5\.7\.1 EPOLICY_SENDER/, 'the same mail, refused by the new rule, without a restart')

  // Rollback: B proposes version 1 again, A approves.
  await b.get('/config')
  const back = await b.post('/config/restore', { version: '1', reason: 'the rule stopped the month-end batch' })
  const backPath = back.headers.location as string
  const backHash = /name="hash" value="([0-9a-f]{64})"/.exec((await a.get(backPath)).body)![1]!
  const restored = await a.post(`${backPath}/approve`, { hash: backHash, code: await box.code(aSecret) })
  t.match(restored.body, /Applied as version 3\./)
  t.equal(await send(), 'accepted', 'acceptance restored')

  const trail = await a.get('/audit?type=config.proposal')
  for (const step of ['proposed', 'approved']) t.match(trail.body, step)
  t.match(trail.body, /ticket 5120/)
  const changed0 = await a.get('/audit?type=config.changed')
  t.match(changed0.body, /wang, approved by mei/, 'the change with its before and after')
  t.match(changed0.body, /policy\.profiles/)
  const versions = await a.get('/audit?type=config.version')
  t.match(versions.body, /&quot;number&quot;:2/)
  t.match(versions.body, /&quot;approver&quot;:&quot;mei&quot;/)
  const changed = await a.get('/config')
  t.match(changed.body, /Version in force 目前版本: <strong>3<\/strong>/)

  // Item 8: a new submission account, its password shown once, in force once approved, without a restart.
  const made = await a.post('/config/accounts', { name: 'batch2', allowFrom: '127.0.0.0/8', reason: 'second statement system' })
  t.equal(made.status, 200)
  const password = /valid when the change is approved\): ([A-Za-z0-9_-]{24})/.exec(made.body)?.[1]
  t.ok(password, 'the password, shown once')
  const accountPath = /action="(\/config\/proposals\/[0-9a-f]{12})\/withdraw"/.exec(made.body)![1]!
  t.notMatch((await a.get(accountPath)).body, password!, 'not shown again')
  const batch2 = nodemailer.createTransport({
    host: '127.0.0.1',
    port: box.submissionPort,
    requireTLS: true,
    auth: { user: 'batch2', pass: password! },
    tls: { ca: readFileSync(join(box.dataDir, 'tls', 'submission.crt')), servername: 'localhost' },
  })
  t.teardown(() => batch2.close())
  const viaBatch2 = () =>
    batch2.sendMail({ from: 'statements@bank.example', to: 'c@example.net', subject: 's', text: 'statement' }).then(
      () => 'accepted',
      (err: { responseCode?: number }) => `refused ${err.responseCode}`,
    )
  t.equal(await viaBatch2(), 'refused 535', 'not before approval')
  const accountHash = /name="hash" value="([0-9a-f]{64})"/.exec((await b.get(accountPath)).body)![1]!
  const ok = await b.post(`${accountPath}/approve`, { hash: accountHash, code: await box.code(bSecret) })
  t.match(ok.body, /Applied as version 4\./)
  t.equal(await viaBatch2(), 'accepted', 'the new account submits, without a restart')
  t.notMatch((await a.get('/config')).body, password!, 'the password is never shown on the configuration page')
})
