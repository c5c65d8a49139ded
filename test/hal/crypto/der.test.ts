import { execFileSync } from 'node:child_process'
import fc from 'fast-check'
import t from 'tap'
import * as der from '../../../hal/crypto/der.ts'
import { children, decodeOid, read } from '../../../hal/crypto/der-read.ts'

/** openssl asn1parse's reading of a DER buffer: one line per element, "depth:hl=.. l=.. prim: TYPE :value". */
function asn1parse(buf: Buffer): string[] {
  return execFileSync('openssl', ['asn1parse', '-inform', 'DER'], { input: buf }).toString().trim().split('\n')
}
const valueOf = (line: string) => line.slice(line.indexOf(':', line.indexOf('prim:') + 5) + 1).trim()

t.test('integers, OIDs, times and strings as openssl asn1parse reads them', async (t) => {
  const ints = [0n, 127n, 128n, 255n, 256n, ...fc.sample(fc.bigInt({ min: 0n, max: 2n ** 160n }), { numRuns: 300, seed: 690 })]
  const oids = fc.sample(
    fc.array(fc.integer({ min: 0, max: 2 ** 31 }), { minLength: 1, maxLength: 6 }).map((a) => `1.3.6.1.4.1.99999.${a.join('.')}`),
    {
      numRuns: 100,
      seed: 691,
    },
  )
  const dates = [new Date('2026-11-26T08:00:00Z'), new Date('2049-12-31T23:59:59Z'), new Date('2050-01-01T00:00:00Z')]
  const lines = asn1parse(
    der.sequence(
      ...ints.map((i) => der.integer(i)),
      ...oids.map((o) => der.oid(o)),
      ...dates.map((d) => der.time(d)),
      der.utf8String('對帳單'),
      der.boolean(true),
    ),
  ).slice(1)
  t.equal(lines.length, ints.length + oids.length + dates.length + 2)
  const hex = (v: bigint) => v.toString(16).toUpperCase()
  const intValues = lines.slice(0, ints.length).map(valueOf)
  t.same(
    intValues.filter((v, i) => v.replace(/^0+(?=.)/, '') !== hex(ints[i]!)),
    [],
    'every integer (serial numbers up to 160 bits): openssl reads the value',
  )
  t.ok(
    ints.every((v) => der.integer(v).equals(der.integer(Buffer.from(v.toString(16).padStart(64, '0'), 'hex')))),
    'from bytes with leading zeros: the same minimal encoding',
  )
  t.throws(() => der.integer(-1n), RangeError, 'negative integers are refused (the box writes none)')
  t.same(lines.slice(ints.length, ints.length + oids.length).map(valueOf), oids, 'every OID')
  t.same(lines.slice(-5, -2).map(valueOf), ['261126080000Z', '491231235959Z', '20500101000000Z'], 'UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280)')
  t.match(lines.at(-1), /BOOLEAN/)
})

t.test('what der.ts writes, der-read.ts reads back element by element', async (t) => {
  const oids = fc.sample(
    fc.array(fc.integer({ min: 0, max: 2 ** 40 }), { minLength: 1, maxLength: 8 }).map((a) => `2.999.${a.join('.')}`),
    { numRuns: 200, seed: 692 },
  )
  t.same(
    oids.filter((o) => decodeOid(read(der.oid(o)).content) !== o),
    [],
    'OIDs round-trip (arcs past 2^32 too)',
  )
  const big = Buffer.alloc(70_000, 7)
  const seq = der.sequence(der.octetString(big), der.nullValue(), der.explicit(0, der.integer(5)))
  const [octets, nul, tagged] = children(read(seq))
  t.ok(octets!.content.equals(big), 'a long-form length (3 bytes)')
  t.equal(nul!.tag, 0x05)
  t.equal(tagged!.tag, 0xa0)
})

t.test('SET OF is sorted by encoding (X.690 §11.6), so a Name encodes one way', async (t) => {
  const a = der.utf8String('b')
  const b = der.integer(1)
  t.ok(der.setOf(a, b).equals(der.setOf(b, a)))
  const name = der.name(der.parseName('CN=Bank Statements,O=Bank Ltd,C=TW'))
  const text = execFileSync('openssl', ['asn1parse', '-inform', 'DER'], { input: name }).toString()
  t.match(text, /PRINTABLESTRING\s+:TW/, 'countryName is a PrintableString (RFC 5280 Appendix A)')
  t.match(text, /UTF8STRING\s+:Bank Statements/)
  t.throws(() => der.parseName('CN=x,Nope=y'), /cannot read "Nope=y"/)
})
