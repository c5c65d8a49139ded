import t from 'tap'
import { ifupdownStanzas } from '../../../hal/net/addresses.ts'
import { Netns, nodeIn } from '../../helpers/netns.ts'

const HERE = new URL('../../../hal/net/addresses.ts', import.meta.url).pathname

t.test('ifupdown stanzas: the management address, the egress addresses, and their source routes', async (t) => {
  const text = ifupdownStanzas({
    management: { nic: 'eth0', address: '10.10.0.5/24', gateway: '10.10.0.1' },
    egress: { nic: 'eth1', addresses: ['192.0.2.11/24', '192.0.2.12/24'], gateway: '192.0.2.1', table: 100 },
  })
  t.match(text, /auto eth0\niface eth0 inet static\n {4}address 10\.10\.0\.5\/24\n {4}gateway 10\.10\.0\.1\n/)
  t.match(text, /auto eth1\niface eth1 inet static\n {4}address 192\.0\.2\.11\/24\n {4}up ip addr add 192\.0\.2\.12\/24 dev eth1\n/)
  t.match(text, / {4}up ip route replace default via 192\.0\.2\.1 dev eth1 table 100\n {4}up ip rule add from 192\.0\.2\.11 table 100\n/)
  const same = ifupdownStanzas({ management: { nic: 'eth0', address: '10.0.0.5/24' }, egress: { nic: 'eth0', addresses: ['10.0.0.11/24'], table: 100 } })
  t.match(same, /address 10\.0\.0\.5\/24\n {4}up ip addr add 10\.0\.0\.11\/24 dev eth0\n/, 'egress on the management NIC: added to its stanza')
  t.throws(
    () => ifupdownStanzas({ management: { nic: 'eth0; reboot', address: '10.0.0.5/24' }, egress: { nic: 'eth1', addresses: [], table: 1 } }),
    /not a network device/,
  )
})

t.test('addresses, source routes and the gateway check, in a namespace the test makes', async (t) => {
  const ns = new Netns(t, 'sgad')
  const box = ns.add('box')
  const gw = ns.add('gw')
  ns.link(box, 'eth1', [], gw, 'eth0', ['192.0.2.1/24'])
  // The functions run where the box runs: inside its namespace.
  const call = (code: string) => nodeIn(ns, box, `import * as a from '${HERE}'\n${code}`)
  t.equal(await call(`console.log(await a.ensureAddress('eth1', '192.0.2.11/24'))`), 'true\n', 'added')
  t.equal(await call(`console.log(await a.ensureAddress('eth1', '192.0.2.11/24'))`), 'false\n', 'already there')
  await call(`await a.ensureSourceRoutes(100, '192.0.2.1', 'eth1', ['192.0.2.11/24']); await a.ensureSourceRoutes(100, '192.0.2.1', 'eth1', ['192.0.2.11/24'])`)
  t.equal(ns.ip(box, ['rule', 'show']).match(/from 192\.0\.2\.11 lookup 100/g)?.length, 1, 'one rule, however often')
  t.match(ns.ip(box, ['route', 'show', 'table', '100']), /default via 192\.0\.2\.1 dev eth1/)
  t.equal(await call(`console.log(await a.gatewayReachable('192.0.2.1', 'eth1', '192.0.2.11/24'))`), 'true\n')
  t.equal(await call(`console.log(await a.gatewayReachable('192.0.2.99', 'eth1', '192.0.2.11/24', 1500))`), 'false\n', 'nobody at that address')
  t.match(await call(`console.log(JSON.stringify(await a.linkState('eth1')))`), /"operstate":"UP".*"192\.0\.2\.11\/24"/)
})
