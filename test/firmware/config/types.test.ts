import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import t from 'tap'
import { hashPassword } from '../../../hal/crypto/password.ts'
import { parseConfig } from '../../../firmware/config/load.ts'
import { jsonSchemaText } from '../../../firmware/config/reference.ts'
import { list, obj, parseWith, records, str } from '../../../firmware/config/types.ts'

const HASH = await hashPassword('a good passphrase')

/** #34: the schema as JSON Schema, and the box's own parser held to it by an independent validator. */

/** Python's jsonschema (Draft 7), an independent validator: the first error's path and validator for each document, or null. */
function pythonJsonSchema(schema: string, docs: unknown[]): ({ path: (string | number)[]; validator: string } | null)[] {
  const script = `
import json, sys, jsonschema
schema, docs = json.loads(sys.stdin.read())
v = jsonschema.Draft7Validator(schema)
out = []
for d in docs:
    e = next(iter(sorted(v.iter_errors(d), key=lambda e: list(e.path))), None)
    out.append(None if e is None else {'path': list(e.path), 'validator': e.validator})
print(json.dumps(out))
`
  const input = `[${schema}, ${JSON.stringify(docs)}]`
  return JSON.parse(execFileSync('/usr/bin/python3', ['-I', '-c', script], { input }).toString()) as ReturnType<typeof pythonJsonSchema>
}

t.test('docs/configuration.schema.json is the schema the box checks with (npm run config-reference -- --write)', async (t) => {
  t.equal(readFileSync(new URL('../../../docs/configuration.schema.json', import.meta.url), 'utf8'), jsonSchemaText())
})

t.test('Python’s jsonschema agrees: what the box accepts is valid, what it refuses for a JSON Schema reason is invalid, at the same key', async (t) => {
  const good = [{}, { submission: { accounts: [{ name: 'firm', passwordHash: HASH }] } }, { delivery: { routes: [] }, log: { level: 'debug' } }]
  const bad: [unknown, string][] = [
    [{ submission: { maxMessageBytes: 'big' } }, 'submission.maxMessageBytes'],
    [{ submission: { maxMessageBytes: 10 } }, 'submission.maxMessageBytes'],
    [{ submission: { tls: { minVersion: 'TLSv1.1' } } }, 'submission.tls.minVersion'],
    [{ submission: { acounts: [] } }, 'submission.acounts'],
    [{ log: 'loud' }, 'log'],
    [{ submission: { accounts: [{ name: 'a b', passwordHash: 'x' }] } }, 'submission.accounts[0].name'],
    [{ hsm: { tokenLabel: 'x'.repeat(33) } }, 'hsm.tokenLabel'],
    [{ spool: { verifyOnStart: 'yes' } }, 'spool.verifyOnStart'],
    [{ schemaVersion: 2.5 }, 'schemaVersion'],
  ]
  const text = jsonSchemaText()
  const python = pythonJsonSchema(text, [...good.map((g) => parseConfig(g)), ...bad.map(([b]) => b)])
  t.same(python.slice(0, good.length), [null, null, null], 'the configurations the box accepted (defaults filled) are valid')
  for (const [i, [raw, key]] of bad.entries()) {
    t.throws(() => parseConfig(raw), { code: 'ECONFIG_INVALID', key }, `the box refuses ${JSON.stringify(raw)} at ${key}`)
    t.ok(python[good.length + i], `and so does jsonschema (${JSON.stringify(python[good.length + i])})`)
  }
})

t.test('a key of a list item that is required has no default to hide its absence', async (t) => {
  t.throws(() => parseConfig({ submission: { accounts: [{ passwordHash: 'x' }] } }), { key: 'submission.accounts[0].name', message: /is required/ })
})

t.test('the file as given is not changed: defaults go into a copy', async (t) => {
  const raw = { submission: { accounts: [{ name: 'firm', passwordHash: HASH }] } }
  const before = JSON.stringify(raw)
  const c = parseConfig(raw)
  t.equal(JSON.stringify(raw), before)
  t.same(c.submission.accounts[0]!.allowFrom, [], 'the copy has the item’s default')
})

t.test('the checks in code run on every value they guard, in lists and list items too', async (t) => {
  const check = (v: string) => (v.startsWith('x') ? 'starts with x' : undefined)
  const s = obj({
    one: str({ default: '', description: 'd', check }),
    many: list(str({ default: '', description: 'd', check }), { default: [], description: 'd' }),
    items: records({ name: str({ default: '', description: 'd', check }) }, { default: [], description: 'd', required: ['name'] }),
  })
  t.same(parseWith(s, {}), { one: '', many: [], items: [] })
  t.throws(() => parseWith(s, { one: 'xa' }), { key: 'one', message: /starts with x/ })
  t.throws(() => parseWith(s, { many: ['a', 'xb'] }), { key: 'many[1]', message: /starts with x/ })
  t.throws(() => parseWith(s, { items: [{ name: 'a' }, { name: 'xc' }] }), { key: 'items[1].name', message: /starts with x/ })
  t.throws(() => parseWith(s, { many: [1] }), { key: 'many[0]', message: /expected a string, got number 1/ })
})

t.test('patterns read as the code wrote them (RegExp without the u flag): a label counts UTF-16 units, as before', async (t) => {
  t.equal(parseConfig({ hsm: { tokenLabel: '有'.repeat(32) } }).hsm.tokenLabel.length, 32)
  t.throws(() => parseConfig({ hsm: { tokenLabel: '😀'.repeat(17) } }), { key: 'hsm.tokenLabel', message: /does not match/ }, '17 emoji are 34 units')
})
