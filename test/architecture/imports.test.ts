import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { importCycles, importGraph, importsOf, LAYERS, layerViolations, sourceFiles } from './imports.ts'

// Run on its own with `npm run check:imports`.
const root = fileURLToPath(new URL('../..', import.meta.url))

t.test('the import graph of firmware/ and hal/ points down the layers only', async (t) => {
  const graph = importGraph(root)
  t.ok(graph.size > 50, `${graph.size} source files read`)
  t.same(layerViolations(graph), [])
})

t.test('no circle of imports between source files', async (t) => {
  t.same(importCycles(importGraph(root)), [])
})

t.test('only hal/hsm talks to PKCS#11 (DESIGN.md)', async (t) => {
  const users = [...importsOf(root)].filter(([, specs]) => specs.includes('pkcs11js')).map(([file]) => file)
  t.ok(users.length > 0)
  t.same(
    users.filter((f) => !f.startsWith('hal/hsm/')),
    [],
  )
})

t.test('every source file has its mirrored test file, or test/coverage-map.json names the tests that cover it', async (t) => {
  const { map } = JSON.parse(readFileSync(join(root, 'test/coverage-map.json'), 'utf8')) as { map: { sources: string[]; tests: string[]; why?: string }[] }
  t.ok(map.length > 10, 'the coverage map has its rows')
  const listed = new Map<string, string[]>()
  for (const row of map) for (const source of row.sources) listed.set(source, row.tests)
  const sources = sourceFiles(root, ['firmware', 'hal', 'provisioning'])
  const uncovered = sources.filter((f) => !existsSync(join(root, 'test', f.replace(/\.ts$/, '.test.ts'))) && !listed.has(f))
  t.same(uncovered, [], 'no test file and not in the coverage map')
  t.same(
    [...listed.keys()].filter((f) => !sources.includes(f)),
    [],
    'the map names no file that is gone',
  )
  t.same(
    [...listed.values()].flat().filter((f) => !existsSync(join(root, f))),
    [],
    'every test the map names exists',
  )
})

t.test("#34: the README's layout lists the layers as LAYERS has them, lowest first", async (t) => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const block = readme.slice(readme.indexOf('<!-- layout:begin'), readme.indexOf('<!-- layout:end -->'))
  const listed = [...block.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1])
  t.same(listed, LAYERS.flat(), 'one row per group, in order')
})

t.test('the checks find what they are for', async (t) => {
  const graph = new Map([
    ['hal/net/tc.ts', ['firmware/log.ts']],
    ['firmware/log.ts', ['firmware/secrets.ts']],
    ['firmware/secrets.ts', []],
    ['firmware/spool/a.ts', ['firmware/spool/b.ts', 'firmware/audit/c.ts']],
    ['firmware/spool/b.ts', ['firmware/spool/a.ts']],
    ['firmware/audit/c.ts', ['provisioning/cli.ts']],
    ['firmware/extra/d.ts', []],
  ])
  t.same(layerViolations(graph), [
    'hal/net/tc.ts imports firmware/log.ts: firmware/log.ts is above hal/net',
    'firmware/spool/a.ts imports firmware/audit/c.ts: firmware/audit is a peer of firmware/spool',
    'firmware/audit/c.ts imports provisioning/cli.ts, outside firmware/ and hal/ (or missing)',
    'firmware/extra/d.ts: its group firmware/extra is in no layer (add it to LAYERS)',
  ])
  t.same(importCycles(graph), [['firmware/spool/a.ts', 'firmware/spool/b.ts']])
})
