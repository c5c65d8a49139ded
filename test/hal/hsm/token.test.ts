import { chmodSync, chownSync, copyFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ensureDevToken, Hsm, HsmError, type HsmOptions } from '../../../hal/hsm/index.ts'
import { SOFTHSM_MODULE } from '../../../hal/hsm/softhsm.ts'
import { assertSafeModule } from '../../../hal/hsm/token.ts'
import { devHsm, run } from '../../helpers/hsm.ts'
import { deviceErrorBurst, loginPerSession, logoutDropsToken, notInitialised, sessionCap, threadedDeviceErrorBurst } from '../../helpers/hsm-quirks.ts'
import { tempDir } from '../../helpers/box.ts'

/** A second Hsm over the token a test made (after closing the first), SoftHSM's or softokn's. */
const reopened = (options: HsmOptions) => new Hsm({ ...options, sessions: 1, reconnectIntervalMs: 100, clock: { now: () => Date.now() } })

t.test('the embedded token: created once with 0600 PIN files, visible to pkcs11-tool, reused after', async (t) => {
  const dir = tempDir(t, 'sg-hsm-')
  const first = ensureDevToken(dir, 'statement-gateway')
  t.equal(first.created, true)
  for (const f of ['user.pin', 'so.pin']) t.equal(statSync(join(dir, f)).mode & 0o777, 0o600, `${f} is 0600`)
  t.equal(statSync(join(dir, 'tokens')).mode & 0o777, 0o700)
  const again = ensureDevToken(dir, 'statement-gateway')
  t.equal(again.created, false, 'idempotent')
  const { stdout } = await run('pkcs11-tool', ['--module', first.module, '-L'], { env: { ...process.env, ...first.env } })
  t.match(stdout, /token label\s+: statement-gateway/, 'an independent PKCS#11 client sees the token')
  t.throws(() => ensureDevToken(dir, 'x'.repeat(33)), { code: 'EHSM_BAD_INPUT' })
})

t.test('a wrong PIN is EHSM_PIN_INCORRECT, not retried as if the token were away', async (t) => {
  const { hsm, dir, options } = await devHsm(t)
  await hsm.close()
  writeFileSync(join(dir, 'user.pin'), 'not-the-pin\n', { mode: 0o600 })
  const again = reopened(options)
  const err = (await again.open().catch((e: unknown) => e)) as HsmError
  t.equal(err.code, 'EHSM_PIN_INCORRECT')
  t.equal(err.ckr, 'CKR_PIN_INCORRECT')
  t.equal(err.transient, false)
  t.notMatch(err.message, /not-the-pin/, 'the PIN is not in the message')
})

t.test('a PIN file readable by others is refused', async (t) => {
  const { hsm, dir, options } = await devHsm(t)
  await hsm.close()
  chmodSync(join(dir, 'user.pin'), 0o644)
  const again = reopened(options)
  await t.rejects(again.open(), { code: 'EHSM_PIN_FILE', message: /mode 644; make it 0600/ })
})

t.test('a vendor module needs a PIN file; a missing module or token label is reported', async (t) => {
  const dir = tempDir(t)
  const base = { tokenLabel: 'sg-test', sessions: 1, reconnectIntervalMs: 100, devDir: dir, clock: { now: () => Date.now() } }
  await t.rejects(new Hsm({ ...base, module: '/usr/lib/softhsm/libsofthsm2.so', pinFile: '' }).open(), { code: 'EHSM_PIN_FILE' })
  writeFileSync(join(dir, 'pin'), '1234\n', { mode: 0o600 })
  await t.rejects(new Hsm({ ...base, module: '/nonexistent/libvendor.so', pinFile: join(dir, 'pin') }).open(), {
    code: 'EHSM_UNAVAILABLE',
    message: /cannot load PKCS#11 module/,
  })
  const { dir: tokenDir, hsm } = await devHsm(t, { token: 'softhsm' }) // the embedded token, by another label
  await hsm.close()
  const wrongLabel = new Hsm({ ...base, module: '', tokenLabel: 'other-label', pinFile: join(tokenDir, 'user.pin'), devDir: tokenDir })
  // ensureDevToken would create "other-label": go through the Token directly to see the lookup fail.
  wrongLabel.token.onReconnect = undefined
  await t.rejects(wrongLabel.token.open(), { code: 'EHSM_TOKEN_NOT_FOUND' })
})

t.test('S9: the module is loaded only from a file and directories only root can write (a path in a tampered config cannot name our own library)', async (t) => {
  t.doesNotThrow(() => assertSafeModule(SOFTHSM_MODULE), "the distribution's SoftHSM2 module")
  const dir = tempDir(t)
  const fake = join(dir, 'libvendor.so')
  copyFileSync(SOFTHSM_MODULE, fake)
  chmodSync(fake, 0o666)
  t.throws(() => assertSafeModule(fake), { code: 'EHSM_MODULE_UNSAFE', message: /libvendor\.so has mode 666: writable by group or others/ })
  chmodSync(fake, 0o755)
  chownSync(fake, 65534, 65534)
  t.throws(() => assertSafeModule(fake), { code: 'EHSM_MODULE_UNSAFE', message: /libvendor\.so is owned by uid 65534, not root/ })
  chownSync(fake, 0, 0)
  // Under /tmp (mode 1777): anyone could have put it there.
  t.throws(() => assertSafeModule(fake), { code: 'EHSM_MODULE_UNSAFE', message: /\(\/tmp has mode 1777: writable by group or others \(above the module / })
  writeFileSync(join(dir, 'pin'), '1234\n', { mode: 0o600 })
  const base = { tokenLabel: 'sg-test', sessions: 1, reconnectIntervalMs: 100, devDir: dir, clock: { now: () => Date.now() } }
  await t.rejects(new Hsm({ ...base, module: fake, pinFile: join(dir, 'pin') }).open(), { code: 'EHSM_MODULE_UNSAFE' }, 'never loaded')
})

t.test('token removed mid-run: operations fail as temporary (never "key not found"); restored: recovers by itself', async (t) => {
  let now = 0
  // The token is taken away by moving SoftHSM's token directory (softokn keeps no token apart from its database).
  const { hsm, dir } = await devHsm(t, { reconnectIntervalMs: 1000, clock: { now: () => now }, token: 'softhsm' })
  await hsm.keys.generateKeyPair('smime', 'rsa-2048')
  await hsm.keys.sign('smime', 'rsa-pkcs1-sha256', Buffer.from('before'))
  t.equal(hsm.token.state, 'connected')

  renameSync(join(dir, 'tokens'), join(dir, 'tokens.away'))
  for (let i = 0; i < 3; i++) {
    const err = (await hsm.keys.sign('smime', 'rsa-pkcs1-sha256', Buffer.from('during')).catch((e: unknown) => e)) as HsmError
    t.ok(err instanceof HsmError && err.transient, `attempt ${i}: ${err.code} is temporary`)
    t.not(err.code, 'EHSM_KEY_NOT_FOUND')
    now += 600
  }
  t.equal(hsm.token.state, 'unavailable')
  const status = await hsm.status([{ label: 'smime', type: 'rsa-2048', purpose: 'test' }])
  t.ok(status.error, 'status reports the outage')

  renameSync(join(dir, 'tokens.away'), join(dir, 'tokens'))
  now += 1001
  const sig = await hsm.keys.sign('smime', 'rsa-pkcs1-sha256', Buffer.from('after'))
  t.equal(sig.length, 256, 'signing works again once the token is back')
  t.equal(hsm.token.state, 'connected')
})

t.test('#33: status never says connected while its own probe fails; the failed probe is the outage, told at once', async (t) => {
  let now = 0
  const { hsm, dir } = await devHsm(t, { reconnectIntervalMs: 1000, clock: { now: () => now }, token: 'softhsm' }) // SoftHSM's token directory moved away
  const required = [{ label: 'smime', type: 'rsa-2048', purpose: 'test' }] as const
  await hsm.keys.generateKeyPair('smime', 'rsa-2048')
  t.equal((await hsm.status(required)).state, 'connected')
  const seen: string[] = []
  hsm.token.onStateChange = (s) => seen.push(s)

  // An idle box: no operation has failed yet when the token goes.
  renameSync(join(dir, 'tokens'), join(dir, 'tokens.away'))
  const s = await hsm.status(required)
  t.ok(s.error, `the probe fails: ${s.error}`)
  t.equal(s.state, 'unavailable', 'the first status after the token went says unavailable')
  t.same(seen, ['unavailable'], 'and the state change is told at once (the log, the alarm)')

  renameSync(join(dir, 'tokens.away'), join(dir, 'tokens'))
  now += 1001
  t.match(await hsm.status(required), { state: 'connected', error: undefined, keys: [{ present: true }] }, 'back: the next probe connects again')
})

t.test('status: token identity, required keys and certificate expiry', async (t) => {
  const { hsm, options, token } = await devHsm(t)
  const required = [
    { label: 'k1', type: 'ec-p256', purpose: 'one' },
    { label: 'k2', type: 'hmac-sha256', purpose: 'two' },
  ] as const
  let s = await hsm.status(required)
  t.match(s, {
    state: 'connected',
    token: { label: options.tokenLabel, model: token === 'softokn' ? 'NSS 3' : 'SoftHSM v2' },
    keys: [
      { label: 'k1', present: false },
      { label: 'k2', present: false },
    ],
  })
  t.same(await hsm.ensureKeys(required), ['k1', 'k2'])
  t.same(await hsm.ensureKeys(required), [], 'second run creates nothing')
  s = await hsm.status(required)
  t.same(
    s.keys.map((k) => k.present),
    [true, true],
  )
})

t.test('#33: the calls that may wait in the module never run on the main thread: an operation and its Init run whole on a token thread', async (t) => {
  const { hsm } = await devHsm(t) // strict, as every token in the tests
  await hsm.keys.generateKeyPair('k', 'rsa-2048')
  await hsm.keys.generateSecretKey('s', 'aes-256') // C_GenerateKeyAsync
  // The main thread's module refuses them (a new call of this kind fails a test rather than stalling the box).
  for (const call of ['C_SignInit', 'C_EncryptInit', 'C_DecryptInit', 'C_GenerateKey', 'C_GenerateKeyPair'] as const) {
    const err = await hsm.token
      .run(call, (_s, p) => (p[call] as unknown as () => unknown)())
      .then(
        () => undefined,
        (e: unknown) => e as HsmError,
      )
    t.match(err?.message, new RegExp(`${call} on the main thread`), `${call} refused on the main thread`)
    await hsm.token.info() // a success between, or three unexplained failures in a row reconnect the token
  }
  // While a token thread signs, the main thread's timers keep their time.
  let late = 0
  let last = performance.now()
  const tick = setInterval(() => {
    late = Math.max(late, performance.now() - last - 1)
    last = performance.now()
  }, 1)
  const sigs = await Promise.all(Array.from({ length: 40 }, (_, i) => hsm.keys.sign('k', 'rsa-pkcs1-sha256', Buffer.from(`m${i}`))))
  clearInterval(tick)
  t.equal(sigs.length, 40)
  t.ok(sigs.every((s) => s.length === 256))
  const { iv, ciphertext } = await hsm.keys.encrypt('s', Buffer.from('data key'))
  t.equal((await hsm.keys.decrypt('s', iv, ciphertext)).toString(), 'data key', 'encrypt and decrypt whole on a token thread')
  t.comment(`the main thread's longest stall while 40 signatures ran: ${late.toFixed(1)} ms`)
  // A token error from the thread is the same HsmError as before.
  const bad = (await hsm.keys
    .decrypt('s', iv, Buffer.concat([ciphertext.subarray(0, -1), Buffer.from([ciphertext.at(-1)! ^ 1])]))
    .catch((e: unknown) => e)) as HsmError
  t.equal(bad.code, 'EHSM_DATA_INVALID', 'a failed tag check comes back as EHSM_DATA_INVALID')
})

t.test('#38: a module that caps its sessions gives a smaller pool, and the operations still all run', async (t) => {
  const { hsm } = await devHsm(t, { sessions: 8, quirks: sessionCap(3) })
  t.equal(hsm.token.sessionsOpen, 3, 'the pool is what the module gave, not a failed start')
  await hsm.ensureKeys([{ label: 'cap/dkim', type: 'rsa-2048', purpose: 'test' }])
  const sigs = await Promise.all(Array.from({ length: 12 }, (_, i) => hsm.keys.sign('cap/dkim', 'rsa-pkcs1-sha256', Buffer.from(`m${i}`))))
  t.equal(sigs.length, 12, '12 signatures on 3 sessions')
  t.equal(hsm.token.state, 'connected')
})

t.test(
  '#38: throttling (CKR_DEVICE_ERROR while the token answers) is retried on the same connection; a long burst is EHSM_BUSY, never a reconnect',
  async (t) => {
    let busyUntil = 0
    const seen = { errors: 0 }
    const { hsm } = await devHsm(t, { quirks: deviceErrorBurst(['C_GetAttributeValue'], () => Date.now() < busyUntil, seen) })
    await hsm.ensureKeys([{ label: 'burst/k', type: 'ec-p256', purpose: 'test' }])
    const generation = hsm.token.generation
    busyUntil = Date.now() + 60
    const keys = await hsm.keys.list()
    t.ok(seen.errors > 0, `the module refused ${seen.errors} calls`)
    t.ok(
      keys.some((k) => k.label === 'burst/k'),
      'the operation succeeded after backing off',
    )
    t.equal(hsm.token.generation, generation, 'on the same connection: no logout, no reconnect')
    busyUntil = Date.now() + 10_000
    const err = (await hsm.keys.list().catch((e: unknown) => e)) as HsmError
    t.equal(err.code, 'EHSM_BUSY', 'a burst longer than the back-off: busy, transient')
    t.equal(err.transient, true)
    t.equal(hsm.token.generation, generation, 'still the same connection')
    t.equal(hsm.token.state, 'connected')
    busyUntil = 0
    t.ok((await hsm.keys.list()).length > 0, 'and it works again when the burst ends')
  },
)

t.test(
  '#38: a CKR_DEVICE_ERROR burst on C_Sign where signing runs (the token threads) is retried on the same connection; a long one is EHSM_BUSY',
  async (t) => {
    const burst = threadedDeviceErrorBurst(['C_Sign'])
    const { hsm } = await devHsm(t, { threadQuirks: burst.threadQuirks })
    await hsm.ensureKeys([{ label: 'burst/sign', type: 'ec-p256', purpose: 'test' }])
    const generation = hsm.token.generation
    const data = Buffer.from('statement')
    t.ok((await hsm.keys.sign('burst/sign', 'ecdsa-p256-sha256', data)).length > 0, 'signs before the burst')
    burst.start()
    setTimeout(() => burst.stop(), 60)
    t.ok((await hsm.keys.sign('burst/sign', 'ecdsa-p256-sha256', data)).length > 0, 'a short burst: signed after backing off')
    t.ok(burst.errors() > 0, `the token threads refused ${burst.errors()} C_Sign calls`)
    burst.start()
    const err = (await hsm.keys.sign('burst/sign', 'ecdsa-p256-sha256', data).catch((e: unknown) => e)) as HsmError
    t.equal(err.code, 'EHSM_BUSY', 'a burst longer than the back-off: busy, transient')
    t.equal(hsm.token.generation, generation, 'the same connection throughout: no logout, no reconnect')
    t.equal(hsm.token.state, 'connected')
    burst.stop()
    t.ok((await hsm.keys.sign('burst/sign', 'ecdsa-p256-sha256', data)).length > 0, 'and it signs again when the burst ends')
  },
)

t.test('#38: a module that wants each session logged in gets a login on each, and no session is refused', async (t) => {
  const { hsm } = await devHsm(t, { sessions: 4, quirks: loginPerSession() })
  const generation = hsm.token.generation
  const lists = await Promise.all(Array.from({ length: 8 }, () => hsm.keys.list()))
  t.equal(lists.length, 8, 'eight listings at once, on all four sessions')
  t.equal(hsm.token.generation, generation, 'no reconnect loop')
})

t.test('#38: a module found not initialised (as in a forked child) is initialised again by the next connect', async (t) => {
  const fork = notInitialised()
  const { hsm } = await devHsm(t, { reconnectIntervalMs: 50, quirks: fork.quirk })
  const generation = hsm.token.generation
  fork.arm()
  const err = (await hsm.keys.list().catch((e: unknown) => e)) as HsmError
  t.equal(err.code, 'EHSM_UNAVAILABLE', 'a temporary failure, never "key not found"')
  await new Promise((r) => setTimeout(r, 60))
  t.ok(Array.isArray(await hsm.keys.list()), 'the next call after the interval works')
  t.equal(hsm.token.generation, generation + 1, 'on a new connection (C_Initialize again)')
})

t.test('#38: the box never logs out while it runs (nShield drops the token); a logout from elsewhere is a temporary outage it recovers from', async (t) => {
  const nshield = logoutDropsToken()
  const { hsm } = await devHsm(t, { reconnectIntervalMs: 50, quirks: nshield.quirk })
  await hsm.ensureKeys([{ label: 'ns/k', type: 'ec-p256', purpose: 'test' }])
  await hsm.keys.sign('ns/k', 'ecdsa-p256-sha256', Buffer.from('a'))
  hsm.token.invalidate(new HsmError('EHSM_UNAVAILABLE', 'test: reconnect'))
  await new Promise((r) => setTimeout(r, 60))
  await hsm.keys.sign('ns/k', 'ecdsa-p256-sha256', Buffer.from('b'))
  t.equal(nshield.logouts.count, 0, 'no C_Logout through a sign, a reconnect and another sign')
  await hsm.token.run('C_Logout', (s, p) => p.C_Logout(s))
  const err = (await hsm.keys.list().catch((e: unknown) => e)) as HsmError
  t.equal(err.code, 'EHSM_UNAVAILABLE', 'the dropped token is a temporary failure, never "key not found"')
  await new Promise((r) => setTimeout(r, 60))
  t.ok(
    (await hsm.keys.list()).some((k) => k.label === 'ns/k'),
    'the next connect logs in again and the key is there',
  )
})
