import { execFile } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { ensureDevToken } from '../../../hal/hsm/index.ts'
import { BOX_KEYS } from '../../../firmware/keys/manifest.ts'
import { gcmLayoutOf, hsmFromConfig, KeyService, probeFor, probeRefusal, tokenNeeds } from '../../../firmware/keys/service.ts'
import { Spool } from '../../../firmware/spool/spool.ts'
import { MECHANISMS } from '../../../hal/hsm/probe.ts'
import { gcmDraftOnlyThreads, missingMechanisms } from '../../helpers/hsm-quirks.ts'
import type { BoxEvent } from '../../../firmware/events.ts'
import { tempDir, testConfig } from '../../helpers/box.ts'
import { devHsm, softoknToken, testCa } from '../../helpers/hsm.ts'
import { logSink } from '../../helpers/logs.ts'
import { until } from '../../helpers/receiver.ts'

const run = promisify(execFile)

t.test('first start creates the embedded token and the box keys; a restart reuses them', async (t) => {
  const config = await testConfig(t)
  const first = logSink()
  const svc = new KeyService({ config, log: first.log, clock: { now: () => Date.now() }, events: { emit: () => {} } })
  await svc.start()
  t.ok(first.records.some((r) => r.msg === 'created the embedded SoftHSM2 token with a random PIN (file mode 0600)'))
  t.match(
    first.records.find((r) => r.msg === 'generated keys in the HSM'),
    { created: BOX_KEYS.map((k) => k.label) },
  )
  t.match(
    first.records.find((r) => r.msg === 'HSM ready'),
    { state: 'ok', token: { label: 'statement-gateway' }, missing: [] },
  )
  t.notMatch(first.text(), /user\.pin"|[A-Za-z0-9_-]{32}/, 'no PIN in the log')
  await svc.stop()

  const second = logSink()
  const again = new KeyService({ config, log: second.log, clock: { now: () => Date.now() }, events: { emit: () => {} } })
  await again.start()
  t.notOk(second.records.some((r) => r.msg === 'generated keys in the HSM' || String(r.msg).startsWith('created the embedded')))
  t.ok(second.records.some((r) => r.msg === 'HSM ready'))
  await again.stop()
})

t.test('a token that is absent at start is not fatal; a PIN problem is', async (t) => {
  const dir = (await testConfig(t)).dataDir
  // A vendor-module setup whose token is not plugged in: SoftHSM with a token of another label.
  const other = ensureDevToken(join(dir, 'hsm'), 'some-other-token')
  process.env.SOFTHSM2_CONF = other.env.SOFTHSM2_CONF
  writeFileSync(join(dir, 'pin'), '1234\n', { mode: 0o600 })
  const config = await testConfig(t, { hsm: { module: '/usr/lib/softhsm/libsofthsm2.so', pinFile: join(dir, 'pin'), tokenLabel: 'absent' } })
  const { log, records } = logSink()
  const svc = new KeyService({ config, log, clock: { now: () => Date.now() }, events: { emit: () => {} } })
  await svc.start()
  t.match(
    records.find((r) => r.msg === 'HSM unavailable at start; will keep trying'),
    { code: 'EHSM_TOKEN_NOT_FOUND' },
  )
  t.match(
    records.find((r) => r.msg === 'HSM not ready'),
    { state: 'unavailable' },
  )
  await svc.stop()

  chmodSync(join(dir, 'pin'), 0o644)
  const bad = new KeyService({ config, log, clock: { now: () => Date.now() }, events: { emit: () => {} } })
  await t.rejects(bad.start(), { code: 'EHSM_PIN_FILE' })
})

t.test('provisioning CLI: init, list, generate, csr, status', async (t) => {
  const config = await testConfig(t)
  const file = join(config.dataDir, 'config.json')
  writeFileSync(file, JSON.stringify({ dataDir: config.dataDir }))
  const cli = (...args: string[]) => run(process.execPath, ['provisioning/hsm.ts', ...args, '--config', file])
  const init = await cli('init')
  t.match(init.stderr, /created the embedded token/)
  t.match(JSON.parse(init.stdout), { state: 'connected', keys: BOX_KEYS.map((k) => ({ label: k.label, present: true })) })
  t.match((await cli('init')).stderr, /all keys present, nothing to do/)
  const probed = JSON.parse((await cli('probe')).stdout) as { mechanisms: Record<string, unknown>; keys: Record<string, string>; missing: unknown[] }
  t.match(probed, { mechanisms: { CKM_SHA256_RSA_PKCS: { flags: Array } }, keys: { 'aes-256': 'ok', 'ec-p256': 'ok' }, missing: [] }, '#38: probe')
  t.match((await cli('generate', 'smime/firm', 'rsa-2048')).stdout, /BEGIN PUBLIC KEY/)
  const list = (await cli('list')).stdout
  t.match(list, /private\s+rsa\s+smime\/firm {2}sensitive=true extractable=false/)
  t.match((await cli('csr', 'smime/firm', '--subject', 'CN=Firm,C=TW')).stdout, /BEGIN CERTIFICATE REQUEST/)
  const missing = await cli('public-key', 'nope').catch((e: { code: number; stderr: string }) => e)
  t.equal((missing as { code: number }).code, 1)
  t.match((missing as { stderr: string }).stderr, /EHSM_KEY_NOT_FOUND/)
  const twice = await cli('generate', 'smime/firm', 'rsa-2048').catch((e: { code: number; stderr: string }) => e)
  t.equal((twice as { code: number }).code, 1, 'a label that exists is not made twice')

  // Every key-management action is in the audit trail (no box running: the tool wrote it itself).
  const found = await run(process.execPath, ['provisioning/audit.ts', 'search', '--type', 'admin.action', '--config', file])
  const actions = found.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
  t.match(actions, [
    { action: 'hsm.init', outcome: 'ok', via: 'cli', detail: /created the embedded token; generated audit\/checkpoint-signing/ },
    { action: 'hsm.generate', target: 'smime/firm', outcome: 'ok', detail: 'rsa-2048 key pair, private key non-extractable' },
    { action: 'hsm.csr', target: 'smime/firm', outcome: 'ok', detail: /CN=Firm,C=TW/ },
    { action: 'hsm.generate', target: 'smime/firm', outcome: 'refused', reason: /EHSM|exists/ },
  ])
  t.equal(actions.length, 4, 'read-only commands (list, status, public-key) are not actions')
  const verified = await run(process.execPath, ['provisioning/audit.ts', 'verify', '--config', file])
  t.match(verified.stdout, /^OK/, 'the trail the tool wrote verifies')
})

t.test('a signing certificate near its end is announced once a day in the log and the audit trail', async (t) => {
  const config = await testConfig(t, { signing: { domains: [{ domain: 'bank.example', smimeKey: 'smime/bank' }] }, hsm: { certificateWarnDays: 30 } })
  const clock = { value: Date.now() }
  const events: BoxEvent[] = []
  const { log, records } = logSink()
  const svc = new KeyService({ config, log, clock: { now: () => clock.value }, events: { emit: (e) => void events.push(e) } })
  await svc.start()
  t.teardown(() => svc.stop())
  t.same(svc.certificateLabels, ['smime/bank'])
  const ca = await testCa(t)
  await svc.hsm.keys.generateKeyPair('smime/bank', 'ec-p256')
  const csr = await svc.hsm.certs.createCsr('smime/bank', 'CN=Bank Statements,O=Bank Ltd,C=TW', ['statements@bank.example'])
  const leaf = new X509Certificate(readFileSync(await ca.issue(csr, 10)))
  await svc.hsm.certs.importCertificate('smime/bank', leaf, [])
  clock.value = leaf.validToDate.getTime() - 9.5 * 86_400_000 // nine and a half days before its end

  const status = await svc.check()
  t.match(status.certificates, [{ label: 'smime/bank', serial: leaf.serialNumber, daysLeft: 9 }])
  const expiring = () => events.filter((e) => e.type === 'hsm.certificate_expiring')
  t.match(expiring(), [{ label: 'smime/bank', serial: leaf.serialNumber, daysLeft: 9 }])
  t.ok(records.some((r) => r.msg === 'signing certificate expires soon: request and import a new one' && r.daysLeft === 9))
  await svc.check()
  t.equal(expiring().length, 1, 'once a day, not at every health check')
  clock.value += 86_400_000
  await svc.check()
  t.match(expiring().at(-1), { daysLeft: 8 })
  clock.value += 12 * 86_400_000
  await svc.check()
  t.ok(records.some((r) => r.msg === 'signing certificate has expired: statements signed with it are refused until a new one is imported'))
})

t.test('#15 finding 10: the token going away, and coming back, is reported when a signing call sees it — not at the next health check', async (t) => {
  const { renameSync } = await import('node:fs')
  const config = await testConfig(t, { hsm: { healthCheckMs: 3_600_000, reconnectIntervalMs: 100 } })
  const { log, records } = logSink()
  const events: BoxEvent[] = []
  const svc = new KeyService({ config, log, clock: { now: () => Date.now() }, events: { emit: (e) => void events.push(e) } })
  await svc.start()
  t.teardown(() => svc.stop())
  await svc.hsm.keys.generateKeyPair('smime', 'rsa-2048')
  await svc.hsm.keys.sign('smime', 'rsa-pkcs1-sha256', Buffer.from('in use')) // the key is known to the box
  const statuses = () => events.filter((e) => e.type === 'hsm.status')
  const before = statuses().length
  const dir = join(config.dataDir, 'hsm')
  renameSync(join(dir, 'tokens'), join(dir, 'tokens.away'))
  const failed = Date.now()
  await svc.hsm.keys.sign('smime', 'rsa-pkcs1-sha256', Buffer.from('x')).catch(() => undefined)
  await until(() => records.some((r) => r.msg === 'HSM not ready'), 2000)
  t.ok(Date.now() - failed < 2000, `"HSM not ready" logged ${Date.now() - failed} ms after the failing call (the health check runs hourly here)`)
  t.not(statuses()[before]?.state, 'ok', 'and recorded in the audit trail')
  renameSync(join(dir, 'tokens.away'), join(dir, 'tokens'))
  // The next signing call after the reconnect interval finds the token back.
  let signedAt = 0
  await until(() => {
    if (!signedAt)
      void svc.hsm.keys.sign('smime', 'rsa-pkcs1-sha256', Buffer.from('y')).then(
        () => (signedAt ||= Date.now()),
        () => undefined,
      )
    return signedAt > 0
  }, 10_000)
  await until(() => statuses().at(-1)?.state === 'ok', 2000)
  t.ok(Date.now() - signedAt < 2000, `"HSM ready" recorded ${Date.now() - signedAt} ms after the call that found the token back`)
})

t.test('#38: a configuration that needs what the token lacks is refused at start, with the config key and the mechanism named', async (t) => {
  const config = await testConfig(t, {
    signing: {
      domains: [
        { domain: 'bank.example', dkimSelector: 'sg1' },
        { domain: 'cards.bank.example', smimeKey: 'smime/cards', smimeAlgorithm: 'rsa-pss-sha256', dkimEd25519Selector: 'ed1' },
      ],
    },
  })
  const { types, needs } = tokenNeeds(config)
  t.same(types.sort(), ['aes-256', 'ec-p256', 'ed25519', 'hmac-sha256', 'rsa-2048'], 'a throw-away key of each type the box will make')
  t.ok(needs.some((n) => n.key === 'signing.domains[1].smimeAlgorithm' && n.mechanism === 'CKM_SHA256_RSA_PKCS_PSS'))
  const { hsm } = await devHsm(t, { quirks: missingMechanisms([MECHANISMS.CKM_SHA256_RSA_PKCS_PSS!]) })
  await t.rejects(probeFor(hsm, config), {
    message: /signing\.domains\[1\]\.smimeAlgorithm.*CKM_SHA256_RSA_PKCS_PSS|CKM_SHA256_RSA_PKCS_PSS \(signing\.domains\[1\]\.smimeAlgorithm\)/,
  })
  const plain = await testConfig(t, { signing: { domains: [{ domain: 'bank.example', dkimSelector: 'sg1' }] } })
  t.same((await probeFor(hsm, plain)).missing, [], 'PKCS#1 v1.5 with SHA-256, the default, needs nothing the token lacks')
})

t.test('#38: hsm.moduleParameters reaches the module — a softokn token named by its database opens; its probe refuses it (M6)', async (t) => {
  const nss = await softoknToken(tempDir(t, 'sg-nss-'))
  const config = await testConfig(t, { hsm: nss })
  const hsm = hsmFromConfig(config, { now: () => Date.now() })
  await hsm.open()
  t.teardown(() => hsm.close())
  t.match(await hsm.token.info(), { label: 'NSS Certificate DB', manufacturer: /Mozilla/ }, 'the token in the configured database')
  t.same(await hsm.ensureKeys([{ label: 'k', type: 'ec-p256', purpose: 'test' }]), ['k'], 'and keys are made in it')
  // softokn hands keys marked non-extractable out under a wrapping key: the box refuses the token at start.
  await t.rejects(probeFor(hsm, config), { key: 'hsm.module', message: /wrapped out keys the box marks non-extractable.*M6/ })
})

t.test('#38: every probe is in the audit trail and on the HSM card — a kept-in token, and a refused one with its reason', async (t) => {
  const events: BoxEvent[] = []
  const config = await testConfig(t)
  const svc = new KeyService({ config, log: logSink().log, clock: { now: () => Date.now() }, events: { emit: (e) => void events.push(e) } })
  await svc.start()
  t.teardown(() => svc.stop())
  const probes = events.filter((e) => e.type === 'hsm.probe')
  t.equal(probes.length, 1, 'one hsm.probe record at start')
  t.match(probes[0], { token: 'statement-gateway', manufacturer: /SoftHSM/, missing: [], refused: undefined })
  const wrap = Object.values((probes[0] as { wrap: Record<string, string> }).wrap)
  t.ok(wrap.length >= 3 && wrap.every((w) => w.startsWith('refused')), `every key type kept in (${wrap.join('; ')})`)
  t.match({ type: 'hsm.probe', ...svc.probeSummary }, probes[0], 'the same findings for the card')
  const { dashboardPage } = await import('../../../firmware/admin/views.ts')
  const viewer = { user: 'wang', role: 'admin' as const, csrf: 'x' }
  const page = dashboardPage(viewer, { hsm: { state: 'connected', probe: svc.probeSummary } }, config, undefined).toString()
  t.match(page, /Probe 檢測: SoftHSM[^]*keys kept in the token 金鑰不可匯出:\s*<strong>yes 是<\/strong>/, 'the card says the keys stay in the token')

  // softokn hands keys out: start is refused, and the probe's record with the reason is emitted before.
  const nss = await softoknToken(tempDir(t, 'sg-nss-'))
  const refused: BoxEvent[] = []
  const bad = new KeyService({
    config: await testConfig(t, { hsm: nss }),
    log: logSink().log,
    clock: { now: () => Date.now() },
    events: { emit: (e) => void refused.push(e) },
  })
  t.teardown(() => bad.stop())
  await t.rejects(bad.start(), { code: 'ECONFIG_INVALID', key: 'hsm.module' })
  t.match(
    refused.find((e) => e.type === 'hsm.probe'),
    { token: 'NSS Certificate DB', wrap: { 'aes-256': 'wrapped', 'hmac-sha256': 'wrapped' }, refused: /wrapped out keys the box marks non-extractable/ },
  )
  const card = dashboardPage(viewer, { hsm: { state: 'connected', probe: bad.probeSummary } }, config, undefined).toString()
  t.match(card, /keys kept in the token 金鑰不可匯出:\s*<strong>no 否<\/strong>/)
  t.match(card, /<li class="alarm">HSM probe: config key &quot;hsm.module&quot;/, 'and an alarm with the reason')
})

t.test('#38: the AES-GCM layout comes from the probe: 2.40 where the token reads it, the draft where only that, else refused', async (t) => {
  const { hsm } = await devHsm(t)
  const config = await testConfig(t)
  const report = await probeFor(hsm, config)
  t.same(report.gcm, { 'pkcs11-2.40': 'ok', draft: 'ok' })
  t.equal(probeRefusal(report), undefined, 'a token reading the 2.40 layout is used')
  t.equal(gcmLayoutOf(report), 'pkcs11-2.40')
  t.equal(gcmLayoutOf({ ...report, gcm: { 'pkcs11-2.40': 'CKR_MECHANISM_PARAM_INVALID', draft: 'ok' } }), 'draft')
  const neither = { ...report, gcm: { 'pkcs11-2.40': 'CKR_MECHANISM_PARAM_INVALID', draft: 'wrong result (the layout is read otherwise)' } }
  t.match(probeRefusal(neither), {
    key: 'hsm.module',
    message: /reads AES-GCM parameters in neither layout.*PKCS#11 2\.40: CKR_MECHANISM_PARAM_INVALID; the older draft layout: wrong result/,
  })
})

t.test('#38: on a module that reads only the draft AES-GCM layout, the box starts, uses that layout, and its spool keys work', async (t) => {
  const config = await testConfig(t)
  const { log, records } = logSink()
  const svc = new KeyService({ config, log, clock: { now: () => Date.now() }, events: { emit: () => {} }, quirks: { threadQuirks: gcmDraftOnlyThreads } })
  await svc.start()
  t.teardown(() => svc.stop())
  t.same(svc.probe?.gcm, { 'pkcs11-2.40': 'CKR_MECHANISM_PARAM_INVALID', draft: 'ok' }, 'the probe found the 2.40 layout refused')
  t.equal(svc.hsm.keys.gcmLayout, 'draft')
  t.match(
    records.find((r) => r.msg === 'HSM probe: the token has what the configuration needs'),
    { gcmLayout: 'draft' },
  )
  const spool = new Spool({ config, log, hsm: svc.hsm, events: { emit: () => {} }, clock: { now: () => Date.now() } })
  await spool.start()
  t.teardown(() => spool.stop())
  const message = Buffer.from('From: statements@bank.example\r\nTo: customer@example.net\r\nSubject: draft layout\r\n\r\nbody\r\n')
  const envelope = {
    id: 'gcm-draft-1',
    mailFrom: 'statements@bank.example',
    rcptTo: ['customer@example.net'],
    account: 'a',
    clientAddress: '127.0.0.1',
    tls: undefined,
    receivedAt: Date.now(),
  }
  await spool.accept({ envelope, message })
  t.same((await spool.read('gcm-draft-1')).message, message, 'a spooled mail is sealed and opened with the epoch key in the draft layout')
})
