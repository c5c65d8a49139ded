import t from 'tap'
import { receivedHeader } from '../../../firmware/submission/trace.ts'

const base = {
  helo: 'stmt01.bank.internal',
  clientAddress: '10.1.2.3',
  hostname: 'gw.bank.example',
  tls: true,
  authenticated: true,
  id: 'Q1',
  at: Date.UTC(2026, 10, 22, 8, 5, 9),
}

t.test('RFC 5321 §4.4 / RFC 3848: protocol keyword from TLS and AUTH, numeric zone', async (t) => {
  t.equal(
    receivedHeader({ ...base, show: 'hidden' }),
    'Received: by gw.bank.example (Statement Gateway) with ESMTPSA id Q1;\r\n\tSun, 22 Nov 2026 08:05:09 +0000\r\n',
  )
  t.match(receivedHeader({ ...base, show: 'hidden', authenticated: false }), / with ESMTPS id Q1;/, 'trusted network over TLS')
  t.match(receivedHeader({ ...base, show: 'hidden', tls: false, authenticated: false }), / with ESMTP id Q1;/)
})

t.test('client name and address only when asked; IPv6 as an address literal', async (t) => {
  t.notMatch(receivedHeader({ ...base, show: 'hidden' }), /stmt01|10\.1\.2\.3/)
  t.match(receivedHeader({ ...base, show: 'name' }), /^Received: from stmt01\.bank\.internal\r\n\tby gw/)
  t.notMatch(receivedHeader({ ...base, show: 'name' }), /10\.1\.2\.3/)
  t.match(receivedHeader({ ...base, show: 'name-and-address' }), /^Received: from stmt01\.bank\.internal \(\[10\.1\.2\.3\]\)\r\n/)
  t.match(
    receivedHeader({ ...base, show: 'name-and-address', clientAddress: 'fd00::5', helo: '[IPv6:fd00::5]' }),
    /^Received: from \[IPv6:fd00::5\] \(\[IPv6:fd00::5\]\)\r\n/,
  )
})

t.test('an EHLO name that is not a domain or address literal never reaches the header', async (t) => {
  for (const helo of ['evil\r\nBcc: x@y', 'a b', 'x'.repeat(300), '<script>', '', undefined]) {
    const h = receivedHeader({ ...base, helo, show: 'name' })
    t.ok(h.startsWith('Received: from unknown\r\n\tby '), JSON.stringify(helo))
    t.equal(h.split('\r\n').length, 4, 'three header lines, no injected field')
  }
})
