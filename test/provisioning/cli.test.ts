import { writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { join } from 'node:path'
import t from 'tap'
import { ConfigVersions } from '../../firmware/config/versions.ts'
import { CONFIG_VERSION_LABEL } from '../../firmware/keys/labels.ts'
import { BOX_KEYS } from '../../firmware/keys/manifest.ts'
import { idsAsPositionals, toolConfig } from '../../provisioning/cli.ts'
import { tempDir } from '../helpers/box.ts'
import { devHsm } from '../helpers/hsm.ts'

t.test('S7: a tool reads the configuration the box runs: the version in force, with what was approved on the page', async (t) => {
  const { hsm } = await devHsm(t)
  await hsm.ensureKeys(BOX_KEYS)
  const dataDir = tempDir(t, 'sg-cli-')
  const path = join(dataDir, 'config.json')
  const file = { dataDir, log: { level: 'info' } }
  writeFileSync(path, JSON.stringify(file))
  const versions = (given?: unknown) =>
    new ConfigVersions({
      dataDir,
      mac: (d) => hsm.keys.hmac(CONFIG_VERSION_LABEL, d),
      clock: { now: () => Date.now() },
      events: { emit: () => undefined },
      ...(given ? { given: { raw: given, from: `file ${path}` } } : {}),
    })
  t.equal(toolConfig('test', path).log.level, 'info', 'before any version: the file')
  await versions(file).start()
  await versions().add({ config: { ...file, log: { level: 'debug' } }, author: 'wang', approver: 'lin', reason: 'ticket 4411', source: 'page' })
  t.equal(toolConfig('test', path).log.level, 'debug', 'the approved change, not the file it started from')
  writeFileSync(path, JSON.stringify({ ...file, log: { level: 'warn' } }))
  t.equal(toolConfig('test', path).log.level, 'warn', 'a file changed since its import is what the box will import at its next start')
})

t.test('a queue id that begins with "-" is a positional, not an unknown option (1 id in 64 does)', async (t) => {
  const args = idsAsPositionals(['remove', '-Bq3xYz_9aKL', '--reason', 'customer asked', '--json'])
  t.same(args, ['remove', '--reason', 'customer asked', '--json', '--', '-Bq3xYz_9aKL'])
  const { values, positionals } = parseArgs({ args, options: { reason: { type: 'string' }, json: { type: 'boolean' } }, allowPositionals: true })
  t.same(positionals, ['remove', '-Bq3xYz_9aKL'])
  t.same(values, { reason: 'customer asked', json: true })
  t.same(idsAsPositionals(['show', 'Bq3xYz_9aKLm', '--json']), ['show', 'Bq3xYz_9aKLm', '--json'], 'other arguments as given')
  t.same(idsAsPositionals(['--state', 'held']), ['--state', 'held'])
  t.same(
    idsAsPositionals(['search', '--id', '-Bq3xYz_9aKL', '--json'], { id: { type: 'string' }, json: { type: 'boolean' } }),
    ['search', '--id=-Bq3xYz_9aKL', '--json'],
    'an option’s value',
  )
  t.same(
    idsAsPositionals(['show', '--json', '-Bq3xYz_9aKL'], { json: { type: 'boolean' } }),
    ['show', '--json', '--', '-Bq3xYz_9aKL'],
    'after a flag: a positional',
  )
})
