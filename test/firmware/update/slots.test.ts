import { execFileSync, spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { Slots } from '../../../firmware/update/slots.ts'
import { tempDir } from '../../helpers/box.ts'
import { craftBundle, vendorKey } from '../../helpers/bundles.ts'

const CLI = new URL('../../../image/cli.ts', import.meta.url).pathname

/** A box with version 1.0.0 (security 1) committed in slot a. */
function box(t: Parameters<typeof tempDir>[0]) {
  const dir = tempDir(t, 'sg-slots-')
  const k = vendorKey()
  const root = join(dir, 'opt')
  const slots = new Slots(root)
  slots.init(craftBundle(dir, 'v1.sgfw', k.priv, { version: '1.0.0', files: { 'firmware/main.ts': 'v1\n' } }), [k.pub])
  const snapshot = () =>
    JSON.stringify({
      state: { ...slots.state(), events: undefined, lastUpdate: undefined },
      current: slots.current(),
      slots: readdirSync(join(root, 'slots')).sort(),
    })
  return { dir, k, root, slots, snapshot }
}

t.test('ETSI 5.3: a good bundle goes into the other slot on trial; committed, it raises the minimum; the dashboard view names both slots', async (t) => {
  const b = box(t)
  t.equal(b.slots.current(), 'a')
  const m = b.slots.install(craftBundle(b.dir, 'v2.sgfw', b.k.priv, { version: '2.0.0', securityVersion: 3, files: { 'firmware/main.ts': 'v2\n' } }))
  t.equal(m.version, '2.0.0')
  t.equal(b.slots.current(), 'b', 'current switched')
  t.equal(readFileSync(join(b.root, 'current', 'firmware/main.ts'), 'utf8'), 'v2\n')
  t.match(b.slots.state(), { trial: { slot: 'b', from: 'a', version: '2.0.0', attempts: 0 }, minSecurityVersion: 1 }, 'the minimum does not move on trial')
  b.slots.commit()
  t.match(b.slots.state(), {
    trial: undefined,
    minSecurityVersion: 3,
    slots: { a: { version: '1.0.0' }, b: { version: '2.0.0' } },
    lastUpdate: { outcome: 'committed' },
  })
  t.same(
    b.slots.takeEvents().map((e) => `${e.step} ${e.version} ${e.outcome}`),
    ['verified 2.0.0 ok', 'installed 2.0.0 ok', 'trial 2.0.0 ok', 'committed 2.0.0 ok'],
    'each step for the audit trail',
  )
  t.same(b.slots.takeEvents(), [], 'taken once')
})

t.test('ETSI 5.3: every bad bundle is refused with its own reason and nothing changes on disk', async (t) => {
  const b = box(t)
  const other = vendorKey()
  const before = b.snapshot()
  const flip = (at: number) => (buf: Buffer) => (buf.writeUInt8(buf.readUInt8(at) ^ 1, at), buf)
  const cases: [string, string, RegExp][] = [
    [
      'tampered file',
      craftBundle(b.dir, 'c1', b.k.priv, { version: '2.0.0', after: (buf, at) => flip(at.payloadStart + 1)(buf) }),
      /main\.ts does not match its SHA-256/,
    ],
    [
      'extra file',
      craftBundle(b.dir, 'c2', b.k.priv, { version: '2.0.0', after: (buf) => Buffer.concat([buf, Buffer.from('#!/bin/sh\n')]) }),
      /10 bytes follow the last file/,
    ],
    ['missing file', craftBundle(b.dir, 'c3', b.k.priv, { version: '2.0.0', after: (buf) => buf.subarray(0, buf.length - 5) }), /shorter than its manifest/],
    [
      'manifest edited',
      craftBundle(b.dir, 'c4', b.k.priv, { version: '2.0.0', after: (buf, at) => flip(at.manifestStart + 20)(buf) }),
      /no signature by a key this box trusts/,
    ],
    ['another key', craftBundle(b.dir, 'c5', other.priv, { version: '2.0.0' }), /no signature by a key this box trusts/],
    ['wrong product', craftBundle(b.dir, 'c6', b.k.priv, { version: '2.0.0', product: 'other-gateway' }), /the bundle is for "other-gateway"/],
    ['downgrade', craftBundle(b.dir, 'c7', b.k.priv, { version: '0.9.0', securityVersion: 0 }), /security version 0 is below this box's minimum 1/],
    [
      'too old to upgrade from',
      craftBundle(b.dir, 'c8', b.k.priv, { version: '3.0.0', minUpgradeFrom: '2.0.0' }),
      /upgrades from 2\.0\.0 or later; this box runs 1\.0\.0/,
    ],
    ['.. path', craftBundle(b.dir, 'c9', b.k.priv, { version: '2.0.0', files: { '../../etc/cron.d/x': 'x' } }), /leaves the slot/],
    ['absolute path', craftBundle(b.dir, 'c10', b.k.priv, { version: '2.0.0', files: { '/etc/passwd': 'x' } }), /is absolute/],
    ['symlink', craftBundle(b.dir, 'c11', b.k.priv, { version: '2.0.0', modes: { 'firmware/main.ts': 0o120777 } }), /has mode 120777: only 644 and 755/],
    ['setuid', craftBundle(b.dir, 'c12', b.k.priv, { version: '2.0.0', modes: { 'firmware/main.ts': 0o4755 } }), /has mode 4755: only 644 and 755 \(no setuid/],
    [
      'oversize file',
      craftBundle(b.dir, 'c13', b.k.priv, {
        version: '2.0.0',
        after: (buf, at) => Buffer.concat([buf.subarray(0, at.payloadStart + 3), Buffer.from('XXXX'), buf.subarray(at.payloadStart + 3)]),
      }),
      /4 bytes follow the last file/,
    ],
    ['not a bundle', craftBundle(b.dir, 'c14', b.k.priv, { after: () => Buffer.from('PK\x03\x04 a zip') }), /not a firmware bundle/],
  ]
  for (const [name, file, reason] of cases) {
    t.throws(() => b.slots.install(file), reason, name)
    t.equal(b.snapshot(), before, `${name}: nothing changed on disk`)
  }
  t.notOk(
    readdirSync(join(b.root, 'slots')).some((n) => n.startsWith('.staging')),
    'no staging left behind',
  )
})

t.test('a trial that does not start healthy rolls back by itself after three attempts; the minimum stays', async (t) => {
  const b = box(t)
  b.slots.install(craftBundle(b.dir, 'v2.sgfw', b.k.priv, { version: '2.0.0', securityVersion: 2 }))
  for (let i = 1; i <= 3; i++) {
    t.same(b.slots.boot(), {}, `start ${i}`)
    t.equal(b.slots.state().trial?.attempts, i)
  }
  t.match(b.slots.boot(), { rolledBack: 'it failed to start healthy 3 times' })
  t.equal(b.slots.current(), 'a', 'back on the previous slot')
  t.match(b.slots.state(), { trial: undefined, minSecurityVersion: 1, lastUpdate: { version: '2.0.0', outcome: 'rolled back', reason: /3 times/ } })
  t.same(b.slots.boot(), {}, 'then nothing to do')
  // The same version may be tried again (its security version was never committed).
  b.slots.install(craftBundle(b.dir, 'v2b.sgfw', b.k.priv, { version: '2.0.0', securityVersion: 2 }))
  t.equal(b.slots.current(), 'b')
})

t.test('key rotation: a bundle signed by the old key brings the new one, trusted from its commit on', async (t) => {
  const b = box(t)
  const next = vendorKey()
  const rogue = vendorKey()
  b.slots.install(craftBundle(b.dir, 'v2.sgfw', b.k.priv, { version: '2.0.0', addKeys: [next.pub] }))
  b.slots.commit(b.slots.manifestOf('b'))
  t.equal(b.slots.state().trustedKeys.length, 2)
  b.slots.install(craftBundle(b.dir, 'v3.sgfw', next.priv, { version: '3.0.0' }))
  t.equal(b.slots.current(), 'a', 'signed by the new key: installed into slot a')
  b.slots.commit()
  t.throws(() => b.slots.install(craftBundle(b.dir, 'v4.sgfw', rogue.priv, { version: '4.0.0' })), /no signature by a key this box trusts/)
})

t.test('kill -9 of the installer at any moment leaves the old slot or the new one, never half', async (t) => {
  for (const ms of [0, 5, 15, 30, 60, 120]) {
    const b = box(t)
    const big = 'x'.repeat(8 * 1024 * 1024)
    const file = craftBundle(b.dir, 'v2.sgfw', b.k.priv, { version: '2.0.0', files: { 'firmware/main.ts': 'v2\n', 'node_modules/big/blob.bin': big } })
    const child = spawn(process.execPath, [CLI, 'install', file, '--root', b.root], { stdio: 'ignore' })
    await new Promise((r) => setTimeout(r, ms))
    child.kill('SIGKILL')
    await new Promise((r) => child.once('exit', r))
    new Slots(b.root).boot() // what the next start does first
    const slots = new Slots(b.root)
    const cur = slots.current()
    const main = readFileSync(join(b.root, 'current', 'firmware/main.ts'), 'utf8')
    if (cur === 'a') t.equal(main, 'v1\n', `killed after ${ms} ms: the old slot, whole`)
    else {
      t.equal(main, 'v2\n', `killed after ${ms} ms: the new slot`)
      t.equal(statSync(join(b.root, 'current', 'node_modules/big/blob.bin')).size, big.length, 'whole')
    }
    t.ok(existsSync(join(b.root, 'state.json')))
    t.doesNotThrow(() => execFileSync(process.execPath, [CLI, 'status', '--root', b.root]), 'a state the tools read')
  }
})

t.test('a rollback takes the configuration back too: versions made during the trial are set aside, kept', async (t) => {
  const b = box(t)
  const { writeFileSync, mkdirSync } = await import('node:fs')
  const dataDir = join(b.dir, 'data')
  const versions = join(dataDir, 'config', 'versions')
  mkdirSync(versions, { recursive: true })
  for (const n of ['000001', '000002']) writeFileSync(join(versions, `${n}.json`), '{}')
  const cfg = join(b.dir, 'config.json')
  writeFileSync(cfg, JSON.stringify({ dataDir }))
  t.equal(
    execFileSync(process.execPath, [CLI, 'install', craftBundle(b.dir, 'v2.sgfw', b.k.priv, { version: '2.0.0' }), '--root', b.root, '--config', cfg]).length >
      0,
    true,
  )
  t.equal(b.slots.state().trial?.configVersionAtStart, 2, 'the version in force when the trial began')
  writeFileSync(join(versions, '000003.json'), '{}') // what the new firmware's migration made
  for (let i = 0; i < 3; i++) b.slots.boot()
  const out = execFileSync(process.execPath, [CLI, 'boot', '--root', b.root, '--config', cfg], { encoding: 'utf8' })
  t.match(out, /configuration versions after 2 set aside: 1/)
  t.match(out, /rolled back to slot a/)
  t.same(
    readdirSync(versions)
      .filter((n) => n.endsWith('.json'))
      .sort(),
    ['000001.json', '000002.json'],
  )
  const aside = readdirSync(versions).find((n) => n.startsWith('rolled-back-'))!
  t.same(readdirSync(join(versions, aside)), ['000003.json'], 'kept aside, not deleted')
})

t.test('#31: a lower version, or the running one again, is refused unless the downgrade is asked for; the refusal names the version', async (t) => {
  const b = box(t)
  b.slots.install(craftBundle(b.dir, 'v1.1.sgfw', b.k.priv, { version: '1.1.0', securityVersion: 2 }))
  b.slots.commit()
  const before = b.snapshot()
  const lower = craftBundle(b.dir, 'v1.0.5.sgfw', b.k.priv, { version: '1.0.5', securityVersion: 2 })
  const replay = craftBundle(b.dir, 'v1.1-again.sgfw', b.k.priv, { version: '1.1.0', securityVersion: 2 })
  for (const [name, file, reason, version] of [
    [
      'lower version, same security version',
      lower,
      /version 1\.0\.5 is lower than the 1\.1\.0 this box runs: a downgrade is installed only when asked/,
      '1.0.5',
    ],
    ['replay of the running version', replay, /version 1\.1\.0 is the version this box runs/, '1.1.0'],
  ] as const) {
    const err = (() => {
      try {
        b.slots.install(file)
      } catch (e) {
        return e as Error & { version?: string }
      }
    })()
    t.match(err?.message, reason, name)
    t.equal(err?.version, version, `${name}: the refusal carries the signed manifest's version`)
    t.equal(b.snapshot(), before, `${name}: nothing changed on disk`)
  }
  // Asked for explicitly (the CLI's --allow-downgrade; on the page, an approved downgrade): installed, on trial.
  t.equal(b.slots.install(lower, undefined, { allowDowngrade: true }).version, '1.0.5')
  t.match(b.slots.state(), { trial: { version: '1.0.5' }, minSecurityVersion: 2 })
  // Still never below the minimum security version, asked for or not.
  b.slots.rollback('test')
  t.throws(
    () => b.slots.install(craftBundle(b.dir, 'v1.0.0.sgfw', b.k.priv, { version: '1.0.0', securityVersion: 1 }), undefined, { allowDowngrade: true }),
    /security version 1 is below this box's minimum 2/,
  )
})

t.test('#31: a .staging-* left by a killed install is removed by the next install and by boot', async (t) => {
  const b = box(t)
  const { mkdirSync, writeFileSync } = await import('node:fs')
  const plant = (name: string) => {
    mkdirSync(join(b.root, 'slots', name, 'node_modules'), { recursive: true })
    writeFileSync(join(b.root, 'slots', name, 'node_modules', 'blob.bin'), Buffer.alloc(1 << 20))
  }
  const staging = () => readdirSync(join(b.root, 'slots')).filter((n) => n.startsWith('.staging-'))
  plant('.staging-x')
  plant('.staging-y')
  t.same(b.slots.boot(), { cleaned: 2 }, 'boot (ExecStartPre) removes both and says so')
  t.same(staging(), [])
  plant('.staging-x')
  // Even an install that is refused starts by clearing what the last one left.
  t.throws(() => b.slots.install(craftBundle(b.dir, 'old.sgfw', b.k.priv, { version: '0.9.0', securityVersion: 1 })), /lower than the 1\.0\.0/)
  t.same(staging(), [], 'removed by the next install')
  plant('.staging-z')
  b.slots.install(craftBundle(b.dir, 'v2.sgfw', b.k.priv, { version: '2.0.0' }))
  t.same(staging(), [], 'and by an install that goes through')
})

t.test('#31: after a rollback the state names the version the other slot really holds', async (t) => {
  const b = box(t)
  b.slots.install(craftBundle(b.dir, 'v2.sgfw', b.k.priv, { version: '2.0.0', securityVersion: 1 }))
  b.slots.rollback('the health check failed')
  t.match(b.slots.state().slots, { a: { version: '1.0.0' }, b: { version: '2.0.0', securityVersion: 1 } })
  b.slots.install(craftBundle(b.dir, 'v3.sgfw', b.k.priv, { version: '3.0.0', securityVersion: 1 }))
  t.match(b.slots.state().slots, { a: { version: '1.0.0' }, b: { version: '3.0.0' } }, 'on trial too: the slot holds what was installed')
  b.slots.rollback('the health check failed again')
  const status = JSON.parse(execFileSync(process.execPath, [CLI, 'status', '--root', b.root], { encoding: 'utf8' })) as { current: string; slots: object }
  t.match(status, { current: 'a', slots: { a: { version: '1.0.0' }, b: { version: '3.0.0' } } }, 'image status shows it')
})

t.test('#31: every CLI failure is one "refused:" line, exit 1, with the version when the manifest was read', async (t) => {
  const b = box(t)
  const run = (...args: string[]) => {
    try {
      return { code: 0, out: execFileSync(process.execPath, [CLI, ...args], { encoding: 'utf8', stdio: 'pipe' }) }
    } catch (err) {
      const e = err as { status: number; stdout: string; stderr: string }
      return { code: e.status, out: e.stdout + e.stderr }
    }
  }
  const missing = run('install', join(b.dir, 'nonexistent.sgfw'), '--root', b.root)
  t.equal(missing.code, 1)
  t.match(missing.out, /^image: refused: cannot read .*nonexistent\.sgfw: no such file\n$/, 'one line, no stack')
  const verifyMissing = run('verify', join(b.dir, 'nonexistent.sgfw'), '--root', b.root)
  t.equal(verifyMissing.code, 1)
  t.equal(verifyMissing.out.trim().split('\n').length, 1, verifyMissing.out)
  t.match(verifyMissing.out, /^image: refused: cannot read .*nonexistent\.sgfw: no such file\n$/)
  const { writeFileSync } = await import('node:fs')
  writeFileSync(join(b.dir, 'short.sgfw'), 'hello\n')
  t.match(run('install', join(b.dir, 'short.sgfw'), '--root', b.root).out, /^image: refused: not a firmware bundle of this product\n$/)
  t.equal(b.slots.state().lastUpdate?.version, '?', 'nothing was read: no version to name')
  const foreign = run('install', craftBundle(b.dir, 'wrong.sgfw', b.k.priv, { version: '2.0.0', product: 'other-gateway' }), '--root', b.root)
  t.match(foreign.out, /^image: refused: the bundle is for "other-gateway".*\n$/)
  const down = run('install', craftBundle(b.dir, 'down.sgfw', b.k.priv, { version: '0.9.0', securityVersion: 0 }), '--root', b.root)
  t.equal(down.code, 1)
  t.match(down.out, /^image: refused: security version 0 is below this box's minimum 1: a downgrade to a vulnerable version \(version 0\.9\.0\)\n$/)
  t.match(b.slots.state().lastUpdate, { version: '0.9.0', outcome: 'refused' }, 'recorded with the version its signed manifest names')
  const same = run('install', craftBundle(b.dir, 'same.sgfw', b.k.priv, { version: '1.0.0' }), '--root', b.root)
  t.match(same.out, /^image: refused: version 1\.0\.0 is the version this box runs: .*--allow-downgrade.*\n$/)
  const allowed = run('install', join(b.dir, 'same.sgfw'), '--root', b.root, '--allow-downgrade')
  t.equal(allowed.code, 0, allowed.out)
  t.match(allowed.out, /version 1\.0\.0 installed in slot b, on trial/)
})
