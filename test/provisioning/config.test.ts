import { execFile } from 'node:child_process'
import { cpSync, existsSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { getCACertificates } from 'node:tls'
import t from 'tap'
import { trailText } from '../helpers/audit.ts'
import { AdminClient, adminBox, setUpFirstAdmin } from '../helpers/admin.ts'
import { tempDir } from '../helpers/box.ts'
import { spawnDaemon, submitter, writeDaemonConfig } from '../helpers/daemon.ts'
import { startReceiver, until } from '../helpers/receiver.ts'

const A = { name: 'wang', password: 'Tea-kettle 7 orchids' }
const TOOL = new URL('../../provisioning/config.ts', import.meta.url).pathname

function tool(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [TOOL, ...args], { timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    )
  })
}

/**
 * The SoftHSM2 token's objects and PINs, as the HSM vendor's backup would move keys to the
 * standby (not its softhsm2.conf, which names the primary's directory).
 */
function moveHsmKeys(from: string, to: string): void {
  cpSync(join(from, 'hsm', 'tokens'), join(to, 'hsm', 'tokens'), { recursive: true })
  for (const f of ['user.pin', 'so.pin']) cpSync(join(from, 'hsm', f), join(to, 'hsm', f))
}

t.test('S12: backup on the primary, restore on a second data directory, approved there, and the standby delivers under the primary’s rules', async (t) => {
  const rx = await startReceiver(t)
  const dir = tempDir(t, 'sg-backup-')
  const caFile = join(dir, 'firm-ca.pem')
  writeFileSync(caFile, getCACertificates('bundled')[0]!)
  const passphraseFile = join(dir, 'passphrase')
  writeFileSync(passphraseFile, 'correct horse battery staple 2026\n', { mode: 0o600 })
  const route = { routes: [{ domain: '*', host: '127.0.0.1', port: rx.port }] }

  // The primary: only firm.example may send, and a CA file the standby will not have.
  const primary = await adminBox(t, {
    delivery: { ...route, tlsCaFile: caFile },
    policy: { profiles: [{ name: 'firm', accounts: ['firm-statements'], domains: ['firm.example'] }] },
  })
  const admin = await setUpFirstAdmin(primary, A.name, A.password)

  const bundle = join(dir, 'primary.sgbk')
  const made = await tool(['backup', '--config', primary.configPath, '--out', bundle, '--passphrase-file', passphraseFile])
  t.equal(made.code, 0, made.stderr)
  t.match(made.stdout, /versions 1–1, 1 files, administrators, \d+ HSM labels/)
  t.equal(statSync(bundle).mode & 0o777, 0o600)
  const text = readFileSync(bundle, 'utf8')
  t.notMatch(text, /firm\.example|scrypt\$|BEGIN CERTIFICATE/, 'nothing of the configuration readable in the bundle')
  await until(() => trailText(join(primary.dataDir, 'audit')).includes('"action":"config.backup"'), 10_000)
  t.pass('the backup is in the primary’s audit trail')
  primary.child.proc.kill('SIGTERM')
  await primary.child.exited
  unlinkSync(caFile)

  // The standby: its own ports and data directory, the primary's HSM keys moved by the vendor's means.
  const standby = await writeDaemonConfig(t, { delivery: route })
  const restore = (...more: string[]) => tool(['restore', bundle, '--config', standby.path, '--passphrase-file', passphraseFile, ...more])

  await t.test('without a copy of the HSM keys the restore stops, naming what would break', async (t) => {
    const bare = await writeDaemonConfig(t, { delivery: route })
    const r = await tool(['restore', bundle, '--config', bare.path, '--passphrase-file', passphraseFile, '--yes'])
    t.equal(r.code, 1)
    t.match(r.stdout, /admin\/password-pepper: missing — pepper for admin password hashes/)
    t.match(r.stderr, /HSM key\(s\) missing or different: restore them with the HSM vendor's backup/)
    t.notOk(existsSync(join(bare.dataDir, 'admin', 'users.json')), 'nothing written')
  })

  moveHsmKeys(primary.dataDir, standby.dataDir)
  const wrong = join(dir, 'wrong')
  writeFileSync(wrong, 'not the passphrase at all, no\n', { mode: 0o600 })
  const refused = await tool(['restore', bundle, '--config', standby.path, '--passphrase-file', wrong])
  t.equal(refused.code, 1)
  t.match(refused.stderr, /wrong passphrase, or the backup was changed/)

  const plan = await restore()
  t.equal(plan.code, 0, plan.stderr)
  t.match(plan.stdout, /policy\.profiles: null -> \[\{"name":"firm"/, 'the diff against the standby’s configuration')
  t.match(plan.stdout, new RegExp(`delivery\\.tlsCaFile: restored to ${standby.dataDir}/config/files/[0-9a-f]{16}-firm-ca\\.pem`))
  t.match(plan.stdout, /admin\/password-pepper: same/)
  t.match(plan.stdout, /config\/version-mac: own/)
  t.match(plan.stdout, /administrators: restore/)
  t.match(plan.stdout, /nothing changed; run again with --yes/)
  t.notOk(existsSync(join(standby.dataDir, 'admin', 'users.json')), 'a plan writes nothing')

  const done = await restore('--yes')
  t.equal(done.code, 0, done.stderr)
  const id = /proposal ([0-9a-f]{12})/.exec(done.stdout)?.[1]
  t.ok(id, done.stdout)
  t.ok(existsSync(join(standby.dataDir, 'admin', 'users.json')), 'the administrators restored')
  t.match(trailText(join(standby.dataDir, 'audit')), /"action":"config\.restore"/, 'the restore in the standby’s audit trail')

  // The standby starts on its own configuration; the primary's administrator approves the restore there.
  const child = spawnDaemon(t, ['--config', standby.path])
  const listening = (await child.waitFor((r) => r.msg === 'submission listening', 30_000)) as unknown as { starttls: { port: number } }
  const url = String((await child.waitFor((r) => r.msg === 'admin page listening', 30_000)).url)
  const c = new AdminClient(url, readFileSync(join(standby.dataDir, 'tls', 'submission.crt'), 'utf8'))
  await c.get('/login')
  t.equal((await c.post('/login', { name: A.name, password: A.password, code: admin.recovery[0]! })).status, 303, 'the primary’s administrator logs in')
  const page = await c.get(`/config/proposals/${id}`)
  t.match(page.body, /restore of .* version 1/)
  const hash = /name="hash" value="([0-9a-f]{64})"/.exec(page.body)?.[1]
  const approved = await c.post(`/config/proposals/${id}/approve`, { hash: hash!, code: await primary.code(admin.secret) })
  t.match(approved.body, /Applied as version 2\./)

  const smtp = await submitter(t, standby.dataDir, listening.starttls.port)
  const send = (from: string) =>
    smtp.sendMail({ from, to: 'customer@example.net', subject: 'statement', text: 'statement' }).then(
      () => 'accepted',
      (err: { responseCode?: number; response?: string }) => `${err.responseCode} ${err.response}`,
    )
  t.equal(await send('statements@firm.example'), 'accepted', 'a statement the primary’s rules allow')
  await until(() => rx.received.some((m) => m.mailFrom.endsWith('firm.example') || m.data.toString().includes('firm.example')), 30_000)
  t.pass('delivered by the standby')
  t.match(await send('statements@bank.example'), /^550 .*EPOLICY_SENDER/, 'and one they refuse, refused')
  child.proc.kill('SIGTERM')
  t.same(await child.exited, { code: 0, signal: null })
})
