import { readFileSync } from 'node:fs'
import t from 'tap'
import { referenceTable, withReference } from '../../../firmware/config/reference.ts'
import { appliesAtOnce, LIVE_KEYS, schema } from '../../../firmware/config/schema.ts'
import { kindOf, shapeOf, type Field } from '../../../firmware/config/types.ts'

t.test('docs/configuration.md carries the reference generated from the current schema', async (t) => {
  const readme = readFileSync(new URL('../../../docs/configuration.md', import.meta.url), 'utf8')
  t.equal(withReference(readme), readme, 'docs/configuration.md is up to date (run: npm run config-reference -- --write)')
})

t.test('every key has a description and appears in the reference', async (t) => {
  const table = referenceTable()
  const walk = (prefix: string, shape: Record<string, Field<unknown>>) => {
    for (const [k, f] of Object.entries(shape)) {
      const key = prefix ? `${prefix}.${k}` : k
      if (kindOf(f) === 'object') walk(key, shapeOf(f)!)
      else {
        t.ok(f.description.length > 15, `${key} is described`)
        t.match(table, `| \`${key}\` |`)
      }
    }
  }
  walk('', shapeOf(schema)!)
})

t.test('S7: every key marked as applying at once is a key of the schema, and the reference says which apply when', async (t) => {
  const table = referenceTable()
  for (const key of LIVE_KEYS) t.match(table, new RegExp(`\\| \`${key.replace(/\./g, '\\.')}[.\`[]`), `${key} is in the schema`)
  t.match(table, /\| `delivery\.retrySeconds` \| [^|]+ \| [^|]+ \| at once \|/)
  t.match(table, /\| `submission\.starttlsPort` \| [^|]+ \| [^|]+ \| restart \|/)
  t.match(table, /\| `hsm\.module` \| [^|]+ \| [^|]+ \| restart \|/)
  t.notOk(appliesAtOnce('delivery.egressX'), 'a key is matched whole, not by a prefix of its name')
  t.ok(appliesAtOnce('policy.profiles'))
})
