import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { CONFIG_ENV, ConfigError, configPathFrom, loadConfigFile, parseConfig } from '../../../firmware/config/load.ts'
import { tempDir } from '../../helpers/box.ts'

t.test('defaults are the embedded development defaults', async (t) => {
  const c = parseConfig({}, '/srv/box')
  t.equal(c.dataDir, '/srv/box/var')
  t.equal(c.submission.host, '127.0.0.1')
  t.equal(c.submission.maxMessageBytes, 30 * 1024 * 1024)
  t.equal(c.submission.tls.minVersion, 'TLSv1.2')
  t.same(c.submission.trustedNetworks, [], 'trusted networks off by default')
  t.same(c.submission.accounts, [], 'no default account, no default password')
  t.equal(c.submission.requireTls, true)
})

t.test('the result is frozen all the way down', async (t) => {
  const c = parseConfig({ submission: { allowFrom: ['10.0.0.0/8'] } })
  t.throws(() => {
    ;(c.submission as { host: string }).host = '0.0.0.0'
  }, TypeError)
  t.throws(() => (c.submission.allowFrom as string[]).push('0.0.0.0/0'), TypeError)
})

t.test('a bad value names the key and the reason', async (t) => {
  const cases: [unknown, string, RegExp][] = [
    [{ submission: { maxMessageBytes: 'big' } }, 'submission.maxMessageBytes', /expected an integer/],
    [{ submission: { maxMessageBytes: 10 } }, 'submission.maxMessageBytes', /outside/],
    [{ submission: { tls: { minVersion: 'TLSv1.1' } } }, 'submission.tls.minVersion', /must be one of TLSv1\.2, TLSv1\.3/],
    [{ submission: { allowFrom: ['10.0.0.0/33'] } }, 'submission.allowFrom[0]', /bad prefix length/],
    [{ submission: { allowFrom: ['intranet'] } }, 'submission.allowFrom[0]', /IPv4 or IPv6/],
    [{ submission: { acounts: [] } }, 'submission.acounts', /unknown key/],
    [{ submission: { accounts: [{ name: 'x' }] } }, 'submission.accounts[0].passwordHash', /required/],
    [{ submission: { accounts: [{ name: 'x', passwordHash: 'hunter2' }] } }, 'submission.accounts[0].passwordHash', /is not a password hash/],
    [{ log: 'loud' }, 'log', /expected an object/],
  ]
  for (const [raw, key, reason] of cases) {
    const err = t.throws(() => parseConfig(raw)) as ConfigError
    t.ok(err instanceof ConfigError, key)
    t.equal(err.key, key)
    t.match(err.message, reason)
  }
})

t.test('config file from --config, --config=, or the environment', async (t) => {
  t.equal(configPathFrom(['--config', '/a.json'], { [CONFIG_ENV]: '/b.json' }), '/a.json')
  t.equal(configPathFrom(['--config=/c.json'], {}), '/c.json')
  t.equal(configPathFrom([], { [CONFIG_ENV]: '/b.json' }), '/b.json')
  t.equal(configPathFrom([], {}), undefined)
})

t.test('loadConfigFile: missing file, bad JSON, good file', async (t) => {
  const dir = tempDir(t)
  t.throws(() => loadConfigFile(join(dir, 'none.json')), /cannot read .*ENOENT/)
  writeFileSync(join(dir, 'bad.json'), '{ "log": ')
  t.throws(() => loadConfigFile(join(dir, 'bad.json')), /is not valid JSON/)
  writeFileSync(join(dir, 'good.json'), JSON.stringify({ dataDir: dir, log: { level: 'warn' } }))
  const c = loadConfigFile(join(dir, 'good.json'))
  t.equal(c.log.level, 'warn')
  t.equal(c.dataDir, dir)
})
