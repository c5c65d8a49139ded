import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ConfigError } from '../../../firmware/config/load.ts'
import { startingFrom } from '../../../firmware/config/start.ts'
import { tempDir } from '../../helpers/box.ts'

t.test('--config PATH, --config=PATH, else $SG_CONFIG; the file as given is kept for the first version (S7)', async (t) => {
  const dir = tempDir(t)
  const path = join(dir, 'config.json')
  const raw = { dataDir: join(dir, 'data'), delivery: { smtpPort: 2526 } }
  writeFileSync(path, JSON.stringify(raw))
  for (const [argv, env] of [
    [['--config', path], {}],
    [[`--config=${path}`], {}],
    [[], { SG_CONFIG: path }],
  ] as const) {
    const s = startingFrom(argv, env)
    t.equal(s.path, path)
    t.same(s.raw, raw)
    t.equal(s.config.delivery.smtpPort, 2526)
    t.equal(s.fromVersion, undefined, 'no version yet: the file')
  }
})

t.test('a bad argument, file or value is a ConfigError naming it', async (t) => {
  const dir = tempDir(t)
  t.throws(() => startingFrom(['--port', '25'], {}), ConfigError)
  t.throws(() => startingFrom(['--port', '25'], {}), /--config PATH/)
  t.throws(() => startingFrom(['extra'], {}), ConfigError, 'no positional arguments')
  t.throws(() => startingFrom(['--config', join(dir, 'missing.json')], {}), /cannot read/)
  writeFileSync(join(dir, 'bad.json'), JSON.stringify({ dataDir: dir, delivery: { smtpPort: 'x' } }))
  t.throws(() => startingFrom(['--config', join(dir, 'bad.json')], {}), ConfigError)
})
