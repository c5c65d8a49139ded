import { readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { SCHEMA_VERSION } from '../../../firmware/config/schema.ts'
import { canonicalJson, ConfigTamperError, ConfigVersions, startingConfig } from '../../../firmware/config/versions.ts'
import type { BoxEvent } from '../../../firmware/events.ts'
import { CONFIG_VERSION_LABEL } from '../../../firmware/keys/labels.ts'
import { BOX_KEYS } from '../../../firmware/keys/manifest.ts'
import { tempDir } from '../../helpers/box.ts'
import { devHsm } from '../../helpers/hsm.ts'

async function rig(t: Parameters<typeof devHsm>[0]) {
  const { hsm } = await devHsm(t)
  await hsm.ensureKeys(BOX_KEYS)
  const dataDir = tempDir(t, 'sg-versions-')
  const events: BoxEvent[] = []
  const clock = { value: Date.UTC(2026, 10, 26, 10, 0, 0), now: () => clock.value }
  const make = (raw?: unknown, from = 'file /etc/sg/config.json') =>
    new ConfigVersions({
      dataDir,
      mac: (data) => hsm.keys.hmac(CONFIG_VERSION_LABEL, data),
      clock,
      events: { emit: (e) => events.push(e) },
      given: raw === undefined ? undefined : { raw, from },
    })
  return { dataDir, events, clock, make }
}

t.test('S7: the configuration a box starts with becomes version 1; the same again adds nothing; a change is imported as the next', async (t) => {
  const r = await rig(t)
  const first = r.make({ delivery: { bandwidthBitsPerSecond: 10_000_000 }, submission: { host: '127.0.0.1' } })
  await first.start()
  const v1 = (await first.inForce())!
  t.match(v1, { number: 1, schemaVersion: SCHEMA_VERSION, author: 'file /etc/sg/config.json', approver: '', source: 'file', reason: /first configuration/ })
  const file = join(first.dir, '000001.json')
  t.equal(statSync(file).mode & 0o777, 0o600)
  t.match(readFileSync(file, 'utf8'), /^\{"mac":"hmac-sha256:[0-9a-f]{64}","version":\{"number":1,/)
  t.match(r.events, [{ type: 'config.version', number: 1, source: 'file' }])

  // Key order and whitespace are not a change.
  await r.make({ submission: { host: '127.0.0.1' }, delivery: { bandwidthBitsPerSecond: 10_000_000 } }).start()
  t.equal((await first.verifyAll()).length, 1, 'the same configuration adds no version')

  r.clock.value += 60_000
  await r.make({ delivery: { bandwidthBitsPerSecond: 20_000_000 }, submission: { host: '127.0.0.1' } }).start()
  const all = await first.verifyAll()
  t.equal(all.length, 2)
  t.match(all[1], { number: 2, reason: 'imported at start: file /etc/sg/config.json differs from version 1', time: '2026-11-26T10:01:00.000Z' })
  t.same((all[1]!.config as { delivery: unknown }).delivery, { bandwidthBitsPerSecond: 20_000_000 })
})

t.test('S7, S9: a version edited on disk, renamed, stripped of its HMAC or made unreadable stops the start, naming the file', async (t) => {
  const r = await rig(t)
  await r.make({ policy: {} }).start()
  await r.make({ policy: {}, log: { level: 'debug' } }).start()
  const versions = r.make({ policy: {}, log: { level: 'debug' } })
  const file = join(versions.dir, '000001.json')
  const original = readFileSync(file, 'utf8')

  const refused = async (why: RegExp, what: string) => {
    const err = await versions.start().then(
      () => undefined,
      (e: unknown) => e,
    )
    t.type(err, ConfigTamperError, what)
    t.match((err as Error).message, why, what)
    t.match((err as ConfigTamperError).file, /\d{6}\.json$/)
  }

  writeFileSync(file, original.replace('"policy":{}', '"policy":{"profiles":[]}'))
  await refused(/000001\.json fails its HMAC check: it was changed outside the box/, 'a value changed')
  writeFileSync(file, original.replace(/"mac":"[^"]+",/, ''))
  await refused(/000001\.json has no HMAC/, 'the HMAC removed')
  writeFileSync(file, '{ not json')
  await refused(/000001\.json is not the JSON the box wrote/, 'garbage')
  writeFileSync(file, original)
  t.equal((await versions.verifyAll()).length, 2, 'the file put back: all is well again')

  const second = join(versions.dir, '000002.json')
  renameSync(second, join(versions.dir, '000003.json'))
  await refused(/000003\.json holds version 2, not the one its name says/, 'a version renamed (to become the one in force)')
  unlinkSync(join(versions.dir, '000003.json'))
  t.equal((await versions.verifyAll()).length, 1)
})

t.test('canonical JSON: key order does not matter, list order does', async (t) => {
  t.equal(canonicalJson({ b: 1, a: { d: [2, 1], c: null } }), '{"a":{"c":null,"d":[2,1]},"b":1}')
  t.not(canonicalJson({ a: [1, 2] }), canonicalJson({ a: [2, 1] }))
})

t.test('S7: a restart runs on the version in force; only a configuration file that changed since its import is imported again', async (t) => {
  const r = await rig(t)
  const file = { log: { level: 'info' } }
  t.same(startingConfig(r.dataDir, { raw: file }), { raw: file, fromVersion: undefined }, 'no versions yet: the file')
  t.same(startingConfig(r.dataDir, undefined), { raw: {}, fromVersion: undefined }, 'nothing at all: the defaults')
  const versions = r.make(file)
  await versions.start()
  await versions.add({ config: { log: { level: 'debug' } }, author: 'wang', approver: 'mei', reason: 'approved on the page', source: 'page' })
  t.same(startingConfig(r.dataDir, { raw: file }), { raw: { log: { level: 'debug' } }, fromVersion: 2 }, 'the same file: the approved change stays')
  await r.make(file).start()
  t.equal((await versions.verifyAll()).length, 2, 'and the unchanged file is not imported again')
  t.same(startingConfig(r.dataDir, undefined), { raw: { log: { level: 'debug' } }, fromVersion: 2 }, 'no file (the appliance): the version in force')
  const edited = { log: { level: 'warn' } }
  t.same(startingConfig(r.dataDir, { raw: edited }), { raw: edited, fromVersion: undefined }, 'a file edited since: the file')
  await r.make(edited).start()
  t.match(await versions.inForce(), { number: 3, source: 'file', config: edited })
})

t.test('S7: new firmware carries a version of an older schema forward as the next version and keeps the old one', async (t) => {
  const r = await rig(t)
  // What firmware of schema 1 left: its version in force names admin.host and admin.port.
  const old = { schemaVersion: 1, admin: { host: '10.10.0.5', port: 443 }, log: { level: 'debug' } }
  await r.make().add({ config: old, author: 'file /etc/sg/config.json', approver: '', reason: 'the first configuration of this box', source: 'file' })
  const file1 = join(r.make().dir, '000001.json')
  const before = readFileSync(file1, 'utf8')

  const after = r.make()
  await after.start()
  const v2 = (await after.inForce())!
  t.match(v2, { number: 2, schemaVersion: SCHEMA_VERSION, author: 'firmware', approver: '', source: 'migration' })
  t.match(v2.reason, /^version 1 carried forward \(schema 1 migrated to 2: admin\.host and admin\.port became admin\.listen/)
  t.same(v2.config, { schemaVersion: 2, admin: { listen: '10.10.0.5:443' }, log: { level: 'debug' } })
  t.equal(readFileSync(file1, 'utf8'), before, 'the old version is kept as it was')
  t.match(r.events.at(-1), { type: 'config.version', number: 2, source: 'migration' })

  await r.make().start()
  t.equal((await after.verifyAll()).length, 2, 'carried forward once')
  t.same(startingConfig(r.dataDir, undefined), { raw: v2.config, fromVersion: 2 })
})

t.test('S7: a configuration file of an older schema is imported migrated, and the same file after an upgrade is not imported again', async (t) => {
  const r = await rig(t)
  const file = { admin: { host: '127.0.0.1', port: 9443 } }
  await r.make(file).start()
  const v1 = (await r.make().inForce())!
  t.same(v1.config, { admin: { listen: '127.0.0.1:9443' }, schemaVersion: 2 })
  t.match(v1.reason, /first configuration of this box \(schema 1 migrated to 2: /)
  await r.make(file).start()
  await r.make({ ...file }).start()
  t.equal((await r.make().verifyAll()).length, 1, 'the unchanged file, read again, is the version in force')
  t.same(startingConfig(r.dataDir, { raw: file }), { raw: v1.config, fromVersion: 1 })
})
