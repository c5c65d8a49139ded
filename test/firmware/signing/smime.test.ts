import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { isSevenBitSafe } from '../../../firmware/mime/encode.ts'
import { field, readHeader } from '../../../firmware/mime/header.ts'
import { run } from '../../helpers/hsm.ts'
import { opensslVerify, signedParts, signingSetup } from '../../helpers/signing.ts'
import { FIXTURES } from '../../fixtures/messages.ts'

t.test('M5, S2: every fixture signed in the HSM verifies with openssl cms and openssl smime; one flipped byte fails', async (t) => {
  const s = await signingSetup(t)
  for (const [name, msg] of Object.entries(FIXTURES)) {
    const signed = await s.sign(msg)
    const cms = await opensslVerify(s.dir, s.ca.cert, signed, 'cms')
    if (!t.ok(cms.ok, `${name}: openssl cms -verify`)) t.comment(cms.output)
    const smime = await opensslVerify(s.dir, s.ca.cert, signed, 'smime')
    if (!t.ok(smime.ok, `${name}: openssl smime -verify`)) t.comment(smime.output)
    t.ok(isSevenBitSafe(signedParts(signed).content), `${name}: the signed part is 7-bit safe`)

    const text = signed.toString('latin1')
    const at = text.indexOf('\r\n\r\n', text.indexOf('micalg=sha-256')) // inside the signed part
    const target = text.indexOf('Content-Type', at) + 2
    const flipped = Buffer.from(signed)
    flipped[target] = flipped[target]! ^ 0x20
    t.notOk((await opensslVerify(s.dir, s.ca.cert, flipped, 'cms')).ok, `${name}: altered content fails`)
  }
})

t.test('message header fields stay outside the signature, byte for byte; the structure is RFC 8551 multipart/signed', async (t) => {
  const s = await signingSetup(t)
  const original = FIXTURES['UTF-8 Chinese subject (RFC 2047) and 8-bit body']!
  const signed = await s.sign(original)
  const o = readHeader(original)
  const m = readHeader(signed.subarray(signed.indexOf('From:')))
  for (const key of ['from', 'to', 'subject', 'date']) {
    t.same(m.headers.find((h) => h.key === key)!.raw, o.headers.find((h) => h.key === key)!.raw, `${key} unchanged`)
  }
  t.match(field(m, 'content-type'), /^multipart\/signed; protocol="application\/pkcs7-signature"; micalg=sha-256; boundary="----=_sg_[0-9a-f]+"$/)
  t.match(signed.toString('latin1'), /Content-Type: application\/pkcs7-signature; name="smime\.p7s"/)
  t.match(
    signedParts(signed).content.toString('latin1'),
    /^Content-Type: text\/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n/,
    '8bit re-encoded as QP before signing',
  )
})

t.test('the CMS is proper DER: re-encoded by openssl it still verifies; signed attributes are sorted', async (t) => {
  const s = await signingSetup(t)
  const signed = await s.sign(FIXTURES['attached PDF (8-bit in binary part)']!)
  const { content, signature } = signedParts(signed)
  writeFileSync(join(s.dir, 'content'), content)
  writeFileSync(join(s.dir, 'sig.der'), signature)
  await run('openssl', ['cms', '-cmsout', '-inform', 'DER', '-in', join(s.dir, 'sig.der'), '-outform', 'DER', '-out', join(s.dir, 'sig2.der')])
  for (const f of ['sig.der', 'sig2.der']) {
    const r = await run('openssl', [
      'cms',
      '-verify',
      '-binary',
      '-inform',
      'DER',
      '-in',
      join(s.dir, f),
      '-content',
      join(s.dir, 'content'),
      '-CAfile',
      s.ca.cert,
      '-out',
      '/dev/null',
    ])
    t.match(r.stderr, /Verification successful/, `${f} verifies`)
  }
  const { readFileSync } = await import('node:fs')
  t.same(readFileSync(join(s.dir, 'sig2.der')), signature, 'openssl re-encodes to the identical bytes (already DER)')
  const printed = (await run('openssl', ['cms', '-cmsout', '-print', '-inform', 'DER', '-in', join(s.dir, 'sig.der')])).stdout
  const order = ['contentType', 'signingTime', 'messageDigest', 'S/MIME Capabilities', 'id-smime-aa-signingCertificateV2']
  for (const name of order) t.match(printed, name, `signed attribute ${name} present`)
  t.match(printed, /digestAlgorithm:\s+algorithm: sha256 \(2\.16\.840\.1\.101\.3\.4\.2\.1\)\s+parameter: <ABSENT>/, 'SHA-256 with absent parameters (RFC 5754)')
})

t.test('RSA-PSS and ECDSA P-256 signatures verify too', async (t) => {
  const pss = await signingSetup(t, { signing: { domains: [{ domain: 'bank.example', smimeKey: 'smime/bank', smimeAlgorithm: 'rsa-pss-sha256' }] } })
  const a = await pss.sign(FIXTURES['plain text']!)
  t.ok((await opensslVerify(pss.dir, pss.ca.cert, a)).ok, 'RSA-PSS')
  await pss.hsm.close() // SoftHSM reads its config once per process: one open token at a time
  const ec = await signingSetup(t, {
    keyType: 'ec-p256',
    signing: { domains: [{ domain: 'bank.example', smimeKey: 'smime/bank', smimeAlgorithm: 'ecdsa-p256-sha256' }] },
  })
  const b = await ec.sign(FIXTURES['plain text']!)
  t.ok((await opensslVerify(ec.dir, ec.ca.cert, b)).ok, 'ECDSA P-256')
})
