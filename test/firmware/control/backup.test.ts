import fc from 'fast-check'
import t from 'tap'
import {
  BackupError,
  collectBackup,
  openBackup,
  planRestore,
  sealBackup,
  SITE_LOCAL_KEYS,
  valuesAt,
  type BackupPayload,
} from '../../../firmware/control/backup.ts'
import { parseConfig } from '../../../firmware/config/load.ts'
import { ConfigVersions } from '../../../firmware/config/versions.ts'
import { CONFIG_VERSION_LABEL } from '../../../firmware/keys/labels.ts'
import { BOX_KEYS } from '../../../firmware/keys/manifest.ts'
import { tempDir } from '../../helpers/box.ts'
import { devHsm } from '../../helpers/hsm.ts'

const PASS = 'a long enough passphrase, 2026'

function payload(config: unknown = { log: { level: 'debug' } }): BackupPayload {
  return {
    createdAt: '2026-11-26T10:00:00.000Z',
    hostname: 'sg1',
    schemaVersion: 2,
    inForce: 1,
    config,
    versions: [],
    files: [],
    secretsExpected: [],
    adminUsers: null,
    hsm: { keys: [], certificates: [] },
  }
}

t.test('S12: a bundle opens only with its passphrase, and any change to it is found', async (t) => {
  const bundle = sealBackup(payload(), PASS)
  t.same(openBackup(bundle, PASS).config, { log: { level: 'debug' } })
  t.throws(() => openBackup(bundle, `${PASS}!`), { code: 'EBACKUP_INVALID', message: /wrong passphrase, or the backup was changed/ })
  const doc = JSON.parse(bundle.toString()) as Record<string, string | object>
  const data = Buffer.from(doc.data as string, 'base64')
  data.writeUInt8(data.readUInt8(5) ^ 1, 5)
  t.throws(() => openBackup(Buffer.from(JSON.stringify({ ...doc, data: data.toString('base64') })), PASS), BackupError, 'a flipped bit in the payload')
  t.throws(() => openBackup(Buffer.from(JSON.stringify({ ...doc, hostname: 'sg2' })), PASS), BackupError, 'the envelope is authenticated too')
  const kdf = doc.kdf as Record<string, number>
  t.throws(() => openBackup(Buffer.from(JSON.stringify({ ...doc, kdf: { ...kdf, N: 2 ** 30 } })), PASS), {
    code: 'EBACKUP_INVALID',
    message: /key derivation costs out of range/,
  })
  t.throws(() => sealBackup(payload(), 'short'), { code: 'EBACKUP_INVALID', message: /at least 16 characters/ })
  // The property below once found it: a version that cannot be made a string threw a TypeError.
  const odd = Buffer.from(JSON.stringify({ format: 'statement-gateway-config-backup', formatVersion: { toString: false } }))
  t.throws(() => openBackup(odd, PASS), { code: 'EBACKUP_INVALID', message: /backup format \{"toString":false\} is not one this firmware reads/ })
  t.notMatch(bundle.toString(), /debug/, 'the payload is not readable')
})

t.test('property: anything that is not a bundle is refused with a BackupError, never another failure', async () => {
  const bundle = JSON.parse(sealBackup(payload(), PASS).toString()) as Record<string, unknown>
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
        fc.json().map((j) => Buffer.from(j)),
        fc
          .dictionary(fc.constantFrom('format', 'formatVersion', 'cipher', 'kdf', 'iv', 'data', 'tag'), fc.jsonValue())
          .map((d) => Buffer.from(JSON.stringify({ ...bundle, ...d, kdf: { name: 'scrypt', N: 2 ** 14, r: 8, p: 1, salt: '' } }))),
      ),
      (input) => {
        try {
          openBackup(input, PASS)
          return false
        } catch (err) {
          return err instanceof BackupError
        }
      },
    ),
    { numRuns: 150 },
  )
})

t.test('valuesAt finds each file a pattern names, in lists too', async (t) => {
  const raw = { policy: { profiles: [{ consentFile: '/a' }, { name: 'x' }, { consentFile: '/b' }] }, delivery: { tlsCaFile: '' } }
  t.same(
    valuesAt(raw, 'policy.profiles[].consentFile').map((v) => [v.key, v.value]),
    [
      ['policy.profiles[0].consentFile', '/a'],
      ['policy.profiles[2].consentFile', '/b'],
    ],
  )
  t.same(valuesAt(raw, 'delivery.tlsCaFile'), [], 'an empty path names no file')
})

t.test('S12: the backup takes every version and what the HSM must hold; a restore keeps the standby’s own addresses and HSM', async (t) => {
  const { hsm } = await devHsm(t)
  await hsm.ensureKeys(BOX_KEYS)
  const dataDir = tempDir(t, 'sg-backup-')
  const versions = new ConfigVersions({
    dataDir,
    mac: (d) => hsm.keys.hmac(CONFIG_VERSION_LABEL, d),
    clock: { now: () => Date.now() },
    events: { emit: () => undefined },
    given: {
      raw: { dataDir, admin: { listen: '10.0.0.1:443' }, delivery: { bandwidthBitsPerSecond: 5_000_000 }, hsm: { pinFile: '/etc/sg/pin' } },
      from: 'file',
    },
  })
  await versions.start()
  const p = await collectBackup({ config: parseConfig({ dataDir }), hsm, versionsDir: versions.dir, hostname: 'sg1', now: Date.now() })
  t.equal(p.versions.length, 1)
  t.same(p.secretsExpected, [{ key: 'hsm.pinFile', path: '/etc/sg/pin' }], 'secrets are named, never carried')
  const pepper = p.hsm.keys.find((k) => k.label === 'admin/password-pepper')
  t.match(pepper, { present: true, own: false, check: /^kcv:[0-9a-f]{16}$/ })
  t.match(
    p.hsm.keys.find((k) => k.label === 'audit/checkpoint-signing'),
    { own: true, check: /^spki-sha256:[0-9a-f]{64}$/ },
  )

  const standbyDir = tempDir(t, 'sg-standby-')
  const local = { dataDir: standbyDir, admin: { listen: '127.0.0.1:9443' } }
  const plan = await planRestore({ payload: p, local, dataDir: standbyDir, hsm })
  t.match(plan.config, { dataDir: standbyDir, admin: { listen: '127.0.0.1:9443' }, delivery: { bandwidthBitsPerSecond: 5_000_000 } })
  t.notOk('hsm' in plan.config, 'the HSM section is the standby’s (none: the embedded token)')
  t.same(plan.keyProblems, [], 'the same HSM holds the same keys')
  t.same(plan.secretsExpected, [], 'the standby names no PIN file of its own (the embedded token)')
  const vendor = await planRestore({
    payload: p,
    local: { ...local, hsm: { module: '/usr/lib/vendor.so', pinFile: '/etc/sg/standby.pin' } },
    dataDir: standbyDir,
    hsm,
  })
  t.same(vendor.secretsExpected, [{ key: 'hsm.pinFile', path: '/etc/sg/standby.pin', present: false }], 'its own PIN file, missing so far')
  t.ok(SITE_LOCAL_KEYS.includes('delivery.egress'))
  t.equal(plan.adminUsers, 'none in the backup')
})
