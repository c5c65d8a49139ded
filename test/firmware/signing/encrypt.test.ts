import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { GatewayError } from '../../../firmware/errors.ts'
import { opensslSelfSigned, run } from '../../helpers/hsm.ts'
import { mailauthDkimVerify, opensslVerify, pythonDkimVerify, signingSetup } from '../../helpers/signing.ts'
import { FIXTURES } from '../../fixtures/messages.ts'
import { tempDir } from '../../helpers/box.ts'

async function recipient(t: Parameters<typeof tempDir>[0], address: string) {
  return opensslSelfSigned(tempDir(t), 'r', { key: 'rsa', subject: `/CN=Customer/emailAddress=${address}`, days: 30, ext: [`subjectAltName=email:${address}`] })
}

for (const cipher of ['aes-256-cbc', 'aes-256-gcm'] as const) {
  t.test(`M5 optional encryption (${cipher}): sign-then-encrypt; the customer decrypts, then verifies the firm's signature`, async (t) => {
    const r = await recipient(t, 'customer@example.net')
    const s = await signingSetup(t, {
      signing: {
        domains: [{ domain: 'bank.example', smimeKey: 'smime/bank', dkimSelector: 'sg1' }],
        encryptTo: [{ address: 'customer@example.net', certFile: r.cert }],
        encryptionCipher: cipher,
      },
    })
    const secret = 'Account balance NT$ 1,234,567 for customer A12****789'
    const msg = Buffer.from(FIXTURES['plain text']!.toString('latin1').replace('your statement is ready.', secret), 'latin1')
    const out = await s.sign(msg)
    const text = out.toString('latin1')
    t.notMatch(text, /1,234,567/, 'the content is not readable in transit')
    t.match(text, cipher === 'aes-256-gcm' ? /smime-type=authEnveloped-data/ : /smime-type=enveloped-data/)
    t.match(text, /\r\nSubject: November statement\r\n/, 'message header fields stay outside')
    const record = await s.dkimRecord()
    t.equal(await pythonDkimVerify(out, record), true, 'DKIM covers the encrypted mail')
    t.same(await mailauthDkimVerify(out, record), ['pass'])

    writeFileSync(join(s.dir, 'enc.eml'), out)
    await run('openssl', ['cms', '-decrypt', '-in', join(s.dir, 'enc.eml'), '-recip', r.cert, '-inkey', r.key, '-out', join(s.dir, 'dec.eml')])
    const decrypted = readFileSync(join(s.dir, 'dec.eml'))
    t.match(decrypted.toString('latin1'), /^Content-Type: multipart\/signed/)
    const verified = await opensslVerify(s.dir, s.ca.cert, decrypted)
    if (!t.ok(verified.ok, 'the inner signature verifies')) t.comment(verified.output)
    const content = await run('openssl', ['cms', '-verify', '-CAfile', s.ca.cert, '-in', join(s.dir, 'dec.eml')])
    t.match(content.stdout, /A12\*\*\*\*789/)
  })
}

t.test('a mail to several recipients of whom only some have certificates is refused, not sent half-encrypted', async (t) => {
  const r = await recipient(t, 'customer@example.net')
  const s = await signingSetup(t, {
    signing: { domains: [{ domain: 'bank.example', smimeKey: 'smime/bank' }], encryptTo: [{ address: 'customer@example.net', certFile: r.cert }] },
  })
  const err = await s.sign(FIXTURES['plain text']!, ['customer@example.net', 'other@example.net']).catch((e: unknown) => e)
  t.ok(err instanceof GatewayError)
  t.equal((err as GatewayError).code, 'EENCRYPT_RECIPIENT_CERT')
  const plain = await s.sign(FIXTURES['plain text']!, ['other@example.net'])
  t.match(plain.toString('latin1'), /multipart\/signed/, 'recipients without a certificate get the signed mail')
})

t.test('#15 finding 11: the trail says "encrypted" only for a mail that was encrypted, DKIM or not', async (t) => {
  const r = await recipient(t, 'customer@example.net')
  const s = await signingSetup(t, {
    signing: {
      domains: [{ domain: 'bank.example', smimeKey: 'smime/bank', dkimSelector: 'sg1' }],
      encryptTo: [{ address: 'customer@example.net', certFile: r.cert }],
    },
  })
  await s.sign(FIXTURES['plain text']!, ['other@example.net'])
  await s.sign(FIXTURES['plain text']!, ['customer@example.net'])
  const signed = s.events.filter((e) => e.type === 'signing.signed')
  t.match(signed, [
    { encrypted: false, dkim: ['bank.example/sg1 rsa-sha256'] },
    { encrypted: true, dkim: ['bank.example/sg1 rsa-sha256'] },
  ])
})
