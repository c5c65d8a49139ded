import t from 'tap'
import { AnswerError, checkAnswers, completeAnswers } from '../../provisioning/answers.ts'

const FULL = {
  hostname: 'sg1.bank.example',
  dataDir: '/var/lib/statement-gateway',
  inventory: { location: 'DC2', owner: 'IT', purpose: 'statements' },
  network: {
    management: { nic: 'eth0', address: '10.10.0.5/24' },
    egress: { nic: 'eth1', addresses: ['192.0.2.11/24', '192.0.2.12/24', '192.0.2.13/24', '192.0.2.14/24'], gateway: '192.0.2.1' },
    sshFrom: ['10.10.0.0/24'],
    persist: true,
  },
  hsm: { module: '/usr/lib/vendor/libpkcs11.so', tokenLabel: 'sg', pinFile: '/etc/statement-gateway/hsm.pin' },
  signing: [{ domain: 'bank.example', dkimSelector: 'sg1' }],
  submission: { allowFrom: ['10.20.0.0/24'], accounts: [{ name: 'core-banking', allowFrom: [] }] },
  delivery: { bandwidthBitsPerSecond: 10_000_000, tcDevices: [], routes: [] },
  admin: { port: 443, allowFrom: ['10.10.0.0/24'] },
  timeZone: 'Asia/Taipei',
  firewall: { apply: true },
  service: { install: true },
}

t.test('a complete answers file needs no terminal', async (t) => {
  const a = await completeAnswers(FULL, undefined)
  t.equal(a.network.egress.addresses.length, 4)
})

t.test('without a terminal a missing answer is an error naming its key; defaults fill what has one', async (t) => {
  const { hostname: _h, ...rest } = FULL
  await t.rejects(completeAnswers(rest, undefined), { code: 'EANSWERS_INVALID', message: /^hostname: no answer given/ })
  const { dataDir: _d, ...noDir } = FULL
  t.equal((await completeAnswers(noDir, undefined)).dataDir, '/var/lib/statement-gateway')
})

t.test('at a terminal, each missing answer is asked, lists comma-separated, with defaults offered', async (t) => {
  const asked: string[] = []
  const replies: Record<string, string> = {
    'Host name': 'sg2.bank.example',
    'Where the box': 'DC3',
    'Who owns': 'IT',
    'Management NIC': 'eth0',
    'Management address': '10.10.0.6/24',
    'Egress NIC': 'eth1',
    'The four egress': '192.0.2.21/24, 192.0.2.22/24,192.0.2.23/24 192.0.2.24/24',
    'Networks allowed to SSH': '10.10.0.0/24',
    "The HSM vendor's": 'embedded',
    'Sender domain': 'bank.example',
    "The firm's sending": '10.20.0.0/24',
    'Browsers allowed': '10.10.0.0/24',
  }
  const ask = (q: string, d?: string) => {
    asked.push(q)
    const k = Object.keys(replies).find((x) => q.startsWith(x))
    return Promise.resolve(k ? replies[k]! : (d ?? ''))
  }
  const a = await completeAnswers({}, ask)
  t.equal(a.hostname, 'sg2.bank.example')
  t.same(a.network.egress.addresses, ['192.0.2.21/24', '192.0.2.22/24', '192.0.2.23/24', '192.0.2.24/24'])
  t.same(a.hsm, { embedded: true })
  t.same(a.signing, [{ domain: 'bank.example', dkimSelector: 'sg1' }])
  t.same(a.submission.accounts, [{ name: 'statements', allowFrom: [] }], 'the default account name')
  t.equal(a.delivery.bandwidthBitsPerSecond, 10_000_000)
  t.equal(a.timeZone, 'Asia/Taipei')
  t.ok(asked.some((q) => q.includes('(comma-separated)')))
})

t.test('every problem is named by its key, all at once, before anything changes', async (t) => {
  const bad = {
    ...FULL,
    hostname: 'bank example',
    network: {
      ...FULL.network,
      management: { nic: 'eth0', address: '10.10.0.5' },
      egress: { nic: 'eth1', addresses: ['192.0.2.11/24', '300.0.0.1/24'], gateway: 'gw' },
    },
    admin: { port: 443, allowFrom: [] },
    hsm: {},
    timeZone: 'Mars/Olympus',
  }
  const err = t.throws(() => checkAnswers(bad)) as AnswerError
  t.type(err, AnswerError)
  for (const k of [
    'hostname:',
    'network.management.address: 10.10.0.5 needs its prefix',
    'network.egress.addresses: four addresses, not 2',
    'network.egress.addresses[1]: 300.0.0.1/24 is not an address',
    'network.egress.gateway: gw',
    'admin.allowFrom: at least one network',
    'hsm.module',
    'timeZone: Mars/Olympus',
  ])
    t.match(err.message, k)
})
