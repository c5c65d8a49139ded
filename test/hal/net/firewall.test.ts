import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { applyRuleset, nftRuleset, readCounters, type FirewallSpec } from '../../../hal/net/firewall.ts'
import { tempDir } from '../../helpers/box.ts'
import { Netns, nodeIn, scan } from '../../helpers/netns.ts'

const SPEC: FirewallSpec = {
  listeners: [
    { name: 'submission STARTTLS', address: '10.99.0.1', port: 587, from: ['10.99.0.0/24'] },
    { name: 'submission implicit TLS', address: '10.99.0.1', port: 465, from: ['10.99.0.0/24', 'fd00:99::/64'] },
    { name: 'admin page', address: '10.99.0.1', port: 8443, from: ['10.98.0.0/24'] },
    { name: 'return path', address: '10.99.0.11', port: 25, from: [] },
  ],
  ssh: { port: 22, from: ['10.98.0.0/24'] },
  egress: ['10.99.0.11', '10.99.0.12', '10.99.0.13', '10.99.0.14'],
  mailPorts: [25, 2526],
}

t.test('the ruleset: one table replaced whole, each listener from its clients, mail only from the egress addresses', async (t) => {
  const r = nftRuleset(SPEC)
  t.match(r, /^table inet statement_gateway \{\}\ndelete table inet statement_gateway\ntable inet statement_gateway \{/m, 'replaced atomically')
  t.match(r, /ip daddr 10\.99\.0\.1 ip saddr 10\.99\.0\.0\/24 tcp dport 587 ct state new accept/)
  t.match(r, /ip daddr 10\.99\.0\.1 ip saddr \{ 10\.99\.0\.0\/24 \} tcp dport 465|ip daddr 10\.99\.0\.1 ip saddr 10\.99\.0\.0\/24 tcp dport 465/)
  t.notMatch(r, /ip6 saddr fd00:99::\/64 tcp dport 465/, 'an IPv6 client range does not open an IPv4 listener')
  t.match(r, /ip daddr 10\.99\.0\.11 tcp dport 25 ct state new accept comment "return path"/, 'the MX from anyone')
  t.match(r, /ip saddr \{ 10\.99\.0\.11, 10\.99\.0\.12, 10\.99\.0\.13, 10\.99\.0\.14 \} tcp dport \{ 25, 2526 \} accept/)
  t.match(r, /tcp dport \{ 25, 2526 \} counter name mail_from_other drop/)
  t.match(r, /policy drop;[\s\S]*counter name dropped_in drop\n {2}\}/, 'everything else dropped and counted')
  t.throws(() => nftRuleset({ ...SPEC, listeners: [{ name: 'x', address: '10.0.0.1; flush ruleset', port: 1, from: [] }] }), /not an IP address/)
  t.throws(() => nftRuleset({ ...SPEC, ssh: { port: 22, from: ['10.0.0.0/33'] } }), /ssh/)
})

t.test('S8, ETSI 5.6: applied in a namespace, a scan from outside finds only the configured ports; mail leaves only from the egress addresses', async (t) => {
  const ns = new Netns(t, 'sgfw')
  const box = ns.add('box')
  const peer = ns.add('peer')
  ns.link(box, 'eth0', ['10.99.0.1/24', '10.99.0.11/24', '10.99.0.12/24', '10.99.0.13/24', '10.99.0.14/24'], peer, 'eth0', ['10.99.0.2/24'])
  // Listeners on the box: the configured ones, and two the configuration does not have.
  const listen = `
import { createServer } from 'node:net'
for (const [host, port] of JSON.parse(process.argv[1])) createServer((s) => s.end()).listen(port, host)
console.log('up')
`
  const boxPorts = [
    ['10.99.0.1', 587],
    ['10.99.0.1', 465],
    ['10.99.0.1', 8443],
    ['10.99.0.1', 22],
    ['10.99.0.11', 25],
    ['0.0.0.0', 9999],
    ['10.99.0.1', 8080],
  ]
  const server = ns.spawn(box, process.execPath, ['--input-type=module', '-e', listen, JSON.stringify(boxPorts)])
  await new Promise((r) => server.stdout!.once('data', r))
  const candidates = [...Array.from({ length: 1024 }, (_, i) => i + 1), 2525, 8080, 8443, 9999]
  t.same(await scan(ns, peer, '10.99.0.1', candidates), [22, 465, 587, 8080, 8443, 9999], 'before: all that listen there')

  const file = join(tempDir(t), 'sg.nft')
  writeFileSync(file, nftRuleset(SPEC))
  await applyRuleset(file, { netns: box, check: true })
  await applyRuleset(file, { netns: box })
  await applyRuleset(file, { netns: box }) // again: replaces, does not add
  t.same(await scan(ns, peer, '10.99.0.1', candidates), [465, 587], 'after: submission only (the admin page and SSH are for the management network)')
  t.same(await scan(ns, peer, '10.99.0.11', candidates), [25], 'the return path on its address')
  const counters = await readCounters({ netns: box })
  t.ok(counters.dropped_in!.packets > 0, `dropped and counted: ${counters.dropped_in!.packets} packets`)

  // Outbound mail: from an egress address it leaves, from the management address it does not.
  const mx = ns.spawn(peer, process.execPath, ['--input-type=module', '-e', listen, JSON.stringify([['10.99.0.2', 25]])])
  await new Promise((r) => mx.stdout!.once('data', r))
  const send = (from: string) =>
    nodeIn(
      ns,
      box,
      `import { connect } from 'node:net'
const s = connect({ host: '10.99.0.2', port: 25, localAddress: process.argv[1], timeout: 1000 })
s.on('connect', () => (console.log('connected'), s.destroy()))
s.on('timeout', () => (console.log('dropped'), s.destroy()))
s.on('error', (e) => console.log(e.code))`,
      [from],
    ).then((o) => o.trim())
  t.equal(await send('10.99.0.12'), 'connected', 'from an egress address')
  t.equal(await send('10.99.0.1'), 'dropped', 'from the management address: dropped')
  t.ok(((await readCounters({ netns: box })).mail_from_other?.packets ?? 0) > 0, 'and counted as mail from another address')
})
