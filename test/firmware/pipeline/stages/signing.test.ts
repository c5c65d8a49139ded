import { X509Certificate } from 'node:crypto'
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { GatewayError } from '../../../../firmware/errors.ts'
import { fromAddress } from '../../../../firmware/mime/address.ts'
import { certificateProblem } from '../../../../firmware/pipeline/stages/signing.ts'
import { opensslKeyAndCsr, run } from '../../../helpers/hsm.ts'
import { opensslVerify, signingSetup } from '../../../helpers/signing.ts'
import { FIXTURES } from '../../../fixtures/messages.ts'

const plain = FIXTURES['plain text']!

async function refusal(p: Promise<unknown>): Promise<GatewayError> {
  const err = await p.catch((e: unknown) => e)
  if (!(err instanceof GatewayError)) throw new Error(`expected a GatewayError, got ${String(err)}`)
  return err
}

t.test('an expired certificate is refused with ESIGN_CERT_EXPIRED (550 5.7.1), never sent unsigned', async (t) => {
  const s = await signingSetup(t, { days: 30 })
  s.now.value += 31 * 86_400_000
  const err = await refusal(s.sign(plain))
  t.equal(err.code, 'ESIGN_CERT_EXPIRED')
  t.equal(err.responseCode, 550)
  t.match(err.message, /^5\.7\.1 ESIGN_CERT_EXPIRED the signing certificate for statements@bank\.example is valid/)
})

t.test('a certificate naming another address is ESIGN_CERT_MISMATCH', async (t) => {
  const s = await signingSetup(t, { email: 'someone-else@other.example' })
  const err = await refusal(s.sign(plain))
  t.equal(err.code, 'ESIGN_CERT_MISMATCH')
  t.match(err.message, /does not name statements@bank\.example/)
})

t.test('no certificate installed: required → ESIGN_NO_CERT; not required → sent unsigned but DKIM-signed, with a warning', async (t) => {
  const s = await signingSetup(t, { signing: { domains: [{ domain: 'bank.example', smimeKey: 'smime/missing', dkimSelector: 'sg1' }] } })
  t.ok(
    s.records.some((r) => r.msg === 'signing for this domain is not ready' && r.code === 'EHSM_KEY_NOT_FOUND'),
    'start-up says so',
  )
  const err = await refusal(s.sign(plain))
  t.equal(err.code, 'ESIGN_NO_CERT')
  t.equal(err.responseCode, 550)
  await s.hsm.close()

  const lax = await signingSetup(t, {
    signing: { domains: [{ domain: 'bank.example', smimeKey: 'smime/missing', smimeRequired: false, dkimSelector: 'sg1' }] },
  })
  const out = (await lax.sign(plain)).toString('latin1')
  t.notMatch(out, /multipart\/signed/)
  t.match(out, /^DKIM-Signature:/)
  t.ok(lax.records.some((r) => r.msg === 'no S/MIME certificate; sending unsigned because signing is not required for this domain'))
})

t.test('HSM unavailable: 451 4.3.0 EHSM_UNAVAILABLE, and signing resumes when it returns', async (t) => {
  const s = await signingSetup(t)
  t.ok((await opensslVerify(s.dir, s.ca.cert, await s.sign(plain))).ok)
  const tokenDir = join(s.hsmDir, 'tokens')
  renameSync(tokenDir, `${tokenDir}.away`)
  s.now.value += 61_000 // past the certificate cache
  const err = await refusal(s.sign(plain))
  t.equal(err.code, 'EHSM_UNAVAILABLE')
  t.equal(err.responseCode, 451)
  t.match(err.message, /^4\.3\.0 EHSM_UNAVAILABLE/)
  renameSync(`${tokenDir}.away`, tokenDir)
  await new Promise((r) => setTimeout(r, 1100)) // the token's reconnect interval (real time: the HSM clock is the system's)
  t.ok((await opensslVerify(s.dir, s.ca.cert, await s.sign(plain))).ok, 'signs again')
})

t.test('no From header is EMESSAGE_NO_FROM; From parsing takes the mailbox', async (t) => {
  const s = await signingSetup(t)
  const err = await refusal(s.sign('To: customer@example.net\r\nSubject: x\r\n\r\nbody\r\n'))
  t.equal(err.code, 'EMESSAGE_NO_FROM')
  t.equal(fromAddress(Buffer.from('From: "Bank, Ltd" <Statements@Bank.Example>\r\n\r\n')), 'statements@bank.example')
})

t.test('a sender domain without signing config passes through untouched', async (t) => {
  const s = await signingSetup(t)
  const other = Buffer.from('From: a@unconfigured.example\r\nTo: b@example.net\r\nSubject: x\r\n\r\nbody\r\n')
  t.same(await s.sign(other), other)
})

t.test('certificate checks: key usage and extended key usage must allow e-mail signing', async (t) => {
  const s = await signingSetup(t)
  const dir = s.dir
  // A TLS server certificate for the same key: right key, wrong purpose.
  await opensslKeyAndCsr(join(dir, 'k'), join(dir, 'r'), '/CN=x/emailAddress=statements@bank.example')
  // The CA issues for that request with the extensions in ./ext.
  const issue = () =>
    run('openssl', [
      'x509',
      '-req',
      '-in',
      join(dir, 'r'),
      '-CA',
      s.ca.cert,
      '-CAkey',
      s.ca.key,
      '-out',
      join(dir, 'c'),
      '-days',
      '10',
      '-extfile',
      join(dir, 'ext'),
    ])
  writeFileSync(join(dir, 'ext'), 'extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\nsubjectAltName=email:statements@bank.example\n')
  await issue()
  const tls = new X509Certificate(readFileSync(join(dir, 'c')))
  t.equal(certificateProblem(tls, 'statements@bank.example', new Date())?.code, 'ESIGN_CERT_USAGE')
  writeFileSync(join(dir, 'ext'), 'keyUsage=keyEncipherment\nsubjectAltName=email:statements@bank.example\n')
  await issue()
  t.equal(certificateProblem(new X509Certificate(readFileSync(join(dir, 'c'))), 'statements@bank.example', new Date())?.code, 'ESIGN_CERT_USAGE')
  writeFileSync(join(dir, 'ext'), 'subjectAltName=DNS:bank.example\n')
  await issue()
  t.equal(
    certificateProblem(new X509Certificate(readFileSync(join(dir, 'c'))), 'any.sender@bank.example', new Date()),
    undefined,
    'a domain certificate covers the domain',
  )
  t.equal(certificateProblem(s.leaf, 'statements@bank.example', new Date()), undefined)
})
