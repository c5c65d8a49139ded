import t from 'tap'
import { AddressSet, cidrProblem, unmapIPv4 } from '../../../hal/net/cidr.ts'

t.test('IPv4 and IPv6 ranges, single addresses, IPv4-mapped IPv6', async (t) => {
  const s = new AddressSet(['10.1.0.0/16', '192.0.2.7', '2001:db8::/32'])
  t.ok(s.has('10.1.255.3'))
  t.notOk(s.has('10.2.0.1'))
  t.ok(s.has('192.0.2.7'))
  t.notOk(s.has('192.0.2.8'))
  t.ok(s.has('2001:db8:1::5'))
  t.notOk(s.has('2001:db9::1'))
  t.ok(s.has('::ffff:10.1.2.3'), 'dual-stack form of an IPv4 address')
  t.notOk(s.has('not-an-ip'))
  t.ok(new AddressSet([]).empty)
  t.equal(unmapIPv4('::FFFF:127.0.0.1'), '127.0.0.1')
})

t.test('invalid ranges are explained', async (t) => {
  t.equal(cidrProblem('127.0.0.0/8'), undefined)
  t.match(cidrProblem('127.0.0.0/40'), /bad prefix length/)
  t.match(cidrProblem('::1/129'), /bad prefix length/)
  t.match(cidrProblem('1.2.3.4/8/9'), /not an address range/)
  t.match(cidrProblem('example.com/24'), /IPv4 or IPv6/)
  t.match(cidrProblem('1.2.3.4/abc'), /bad prefix length/)
})
