import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import t from 'tap'
import { ConfigError, parseConfig } from '../../../firmware/config/load.ts'
import { MIGRATIONS, migrateConfig, schemaVersionOf } from '../../../firmware/config/migrations.ts'
import { SCHEMA_VERSION } from '../../../firmware/config/schema.ts'
import { canonicalJson } from '../../../firmware/config/versions.ts'

const FIXTURES = new URL('../../fixtures/config/', import.meta.url).pathname
const read = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as unknown

t.test('S7: one written step from every schema version to the next, up to this firmware', async (t) => {
  for (let v = 1; v < SCHEMA_VERSION; v++) {
    const steps = MIGRATIONS.filter((m) => m.from === v)
    t.equal(steps.length, 1, `one step from schema ${v}`)
    t.equal(steps[0]?.to, v + 1, `and it goes to ${v + 1}`)
    t.ok(steps[0]!.describe.length > 20, 'described for the version it makes')
    t.ok(
      readdirSync(join(FIXTURES, `schema-${v}`)).some((f) => f.endsWith('.migrated.json')),
      `fixtures of schema ${v} exist`,
    )
  }
  t.equal(MIGRATIONS.length, SCHEMA_VERSION - 1, 'no step left over')
})

t.test('S7: every historical fixture migrates to what it must give, and the box accepts the result', async (t) => {
  const dirs = readdirSync(FIXTURES).filter((d) => d.startsWith('schema-'))
  t.ok(dirs.length >= 1)
  for (const dir of dirs) {
    const files = readdirSync(join(FIXTURES, dir)).filter((f) => f.endsWith('.json') && !f.endsWith('.migrated.json'))
    t.ok(files.length >= 3, `${dir} has fixtures`)
    for (const f of files) {
      const given = read(join(FIXTURES, dir, f))
      const want = read(join(FIXTURES, dir, f.replace(/\.json$/, '.migrated.json')))
      const m = migrateConfig(given)
      t.equal(canonicalJson(m.config), canonicalJson(want), `${dir}/${f}`)
      t.equal(schemaVersionOf(m.config), SCHEMA_VERSION)
      t.equal(canonicalJson(migrateConfig(m.config).config), canonicalJson(m.config), `${dir}/${f}: migrating again changes nothing`)
      t.same(parseConfig(given), parseConfig(m.config), `${dir}/${f}: the box reads the old file as it reads the migrated one`)
      t.equal(canonicalJson(given), canonicalJson(read(join(FIXTURES, dir, f))), 'the configuration given is not changed in place')
    }
  }
})

t.test('1 → 2: admin.host and admin.port become admin.listen; the steps name only what changed something', async (t) => {
  const m = migrateConfig({ admin: { host: '10.10.0.5', port: 443 } })
  t.same(m.config, { admin: { listen: '10.10.0.5:443' }, schemaVersion: 2 })
  t.equal(m.from, 1)
  t.same(
    m.steps.map((s) => `${s.from}->${s.to}`),
    ['1->2'],
  )
  t.equal(parseConfig({ admin: { host: '::1', port: 0 } }).admin.listen, '[::1]:0')
  t.same(migrateConfig({ log: { level: 'debug' } }).steps, [], 'a file with no old key needs no step, only the version number')
  t.same(migrateConfig({ schemaVersion: 2, admin: { listen: '127.0.0.1:1' } }).steps, [])
  t.throws(() => migrateConfig({ admin: { host: 5, port: 443 } }), ConfigError, 'a value of the wrong type is named, not guessed at')
})

t.test('a configuration from newer firmware is refused by name, not read wrongly', async (t) => {
  t.throws(() => parseConfig({ schemaVersion: SCHEMA_VERSION + 1 }), /schemaVersion/)
})

t.test('property: any schema-1 admin section migrates to a listen address the current schema accepts, with the same host and port', async () => {
  const host = fc.oneof(fc.ipV4(), fc.ipV6(), fc.domain())
  fc.assert(
    fc.property(host, fc.integer({ min: 0, max: 65535 }), fc.boolean(), (h, port, enabled) => {
      const c = parseConfig({ schemaVersion: 1, admin: { host: h, port, enabled } })
      const colon = c.admin.listen.lastIndexOf(':')
      return Number(c.admin.listen.slice(colon + 1)) === port && c.admin.listen.slice(0, colon).replace(/^\[|\]$/g, '') === h && c.admin.enabled === enabled
    }),
    { numRuns: 300 },
  )
})
