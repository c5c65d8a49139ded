import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { makeSelfSignedServerCert } from '../../../hal/crypto/selfsigned.ts'
import { integer, oid, setOf, time } from '../../../hal/crypto/der.ts'
import { tempDir } from '../../helpers/box.ts'

t.test('the certificate verifies with openssl and says what S1 asks for', async (t) => {
  const dir = tempDir(t)
  const made = makeSelfSignedServerCert({ hostname: 'gw.bank.example', addresses: ['127.0.0.1', '::1'] })
  const pem = join(dir, 'c.pem')
  writeFileSync(pem, made.certPem)
  t.match(execFileSync('openssl', ['verify', '-CAfile', pem, pem]).toString(), /: OK/)
  const text = execFileSync('openssl', ['x509', '-in', pem, '-noout', '-text']).toString()
  t.match(text, /Signature Algorithm: ecdsa-with-SHA256/)
  t.match(text, /NIST CURVE: P-256|ASN1 OID: prime256v1/)
  t.match(text, /DNS:gw\.bank\.example, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1/)
  t.match(text, /TLS Web Server Authentication/)
  t.equal(made.certificate.subject, 'CN=gw.bank.example')
  t.ok(made.certificate.checkPrivateKey((await import('node:crypto')).createPrivateKey(made.keyPem)))
})

t.test('DER writer: the corner cases certificates and CMS depend on', async (t) => {
  t.equal(integer(0).toString('hex'), '020100')
  t.equal(integer(128).toString('hex'), '02020080', 'a leading zero keeps it positive')
  t.equal(integer(Buffer.from([0, 0, 1])).toString('hex'), '020101', 'leading zeros dropped')
  t.equal(oid('1.2.840.113549.1.1.11').toString('hex'), '06092a864886f70d01010b')
  t.equal(setOf(Buffer.from('0401ff', 'hex'), Buffer.from('020101', 'hex')).toString('hex'), '3106020101' + '0401ff', 'SET OF sorted')
  t.equal(time(new Date('2049-12-31T23:59:59Z')).toString('latin1').slice(2), '491231235959Z', 'UTCTime before 2050')
  t.equal(time(new Date('2050-01-01T00:00:00Z')).toString('latin1').slice(2), '20500101000000Z', 'GeneralizedTime from 2050')
  const long = integer(Buffer.alloc(300, 1))
  t.equal(long.subarray(0, 4).toString('hex'), '0282012c', 'long-form length')
})
