import t from 'tap'
import { relaxedBody, relaxedHeader, SIGNED_HEADERS } from '../../../firmware/signing/dkim.ts'
import { parseConfig } from '../../../firmware/config/load.ts'
import { probeFor } from '../../../firmware/keys/service.ts'
import { TEST_TOKEN } from '../../helpers/hsm.ts'
import { mailauthDkimVerify, pythonDkimVerify, signingSetup } from '../../helpers/signing.ts'
import { FIXTURES } from '../../fixtures/messages.ts'

t.test('M4: DKIM made in the HSM passes python3-dkim and mailauth for every fixture; a changed header fails both', async (t) => {
  const s = await signingSetup(t)
  const record = await s.dkimRecord()
  for (const [name, msg] of Object.entries(FIXTURES)) {
    const signed = await s.sign(msg)
    t.match(signed.toString('latin1'), /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=bank\.example; s=sg1;/, `${name}: DKIM-Signature first`)
    t.notMatch(signed.toString('latin1').split('\r\n\r\n')[0], /; l=/, 'no body length limit')
    t.equal(await pythonDkimVerify(signed, record), true, `${name}: python3-dkim passes`)
    t.same(await mailauthDkimVerify(signed, record), ['pass'], `${name}: mailauth passes`)

    const tampered = Buffer.from(signed.toString('latin1').replace('Subject: ', 'Subject: Re: '), 'latin1')
    t.equal(await pythonDkimVerify(tampered, record), false, `${name}: python3-dkim fails on a changed Subject`)
    t.same(await mailauthDkimVerify(tampered, record), ['fail'], `${name}: mailauth fails on a changed Subject`)
  }
})

t.test('From is over-signed: a second From header added later breaks the signature', async (t) => {
  const s = await signingSetup(t)
  const record = await s.dkimRecord()
  const signed = await s.sign(FIXTURES['plain text']!)
  t.match(signed.toString('latin1').replace(/\r\n[ \t]+/g, ''), /h=from:to:subject:date:message-id:mime-version:content-type:from:to:subject:date;/)
  const end = signed.indexOf('\r\n\r\n')
  const added = Buffer.concat([signed.subarray(0, end + 2), Buffer.from('From: attacker@evil.example\r\n'), signed.subarray(end + 2)])
  t.equal(await pythonDkimVerify(added, record), false)
  t.same(await mailauthDkimVerify(added, record), ['fail'])
})

t.test('relaxed canonicalisation (RFC 6376 §3.4.2, §3.4.4 examples)', async (t) => {
  t.equal(relaxedHeader('SubJect :  AbC \t def  \r\n'), 'subject:AbC def')
  t.equal(relaxedHeader('X-Long: first\r\n  second\r\n'), 'x-long:first second')
  t.equal(relaxedBody(Buffer.from(' C \r\nD \t E\r\n\r\n\r\n')).toString(), ' C\r\nD E\r\n')
  t.equal(relaxedBody(Buffer.from('\r\n\r\n')).toString(), '', 'empty body')
  t.equal(relaxedBody(Buffer.from('no newline')).toString(), 'no newline\r\n')
  t.ok(SIGNED_HEADERS.includes('from'))
})

t.test('RFC 8463: an additional ed25519-sha256 signature made in the token passes python3-dkim and mailauth', async (t) => {
  const { dkimKeyLabel } = await import('../../../firmware/keys/labels.ts')
  const { dkimTxtValue } = await import('../../../firmware/signing/dkim.ts')
  const s = await signingSetup(t, {
    signing: { domains: [{ domain: 'bank.example', smimeKey: 'smime/bank', dkimSelector: 'sg1', dkimEd25519Selector: 'ed1' }] },
  })
  const keys = (await s.hsm.keys.list()).filter((k) => k.label === dkimKeyLabel('bank.example', 'ed1'))
  if (TEST_TOKEN === 'softokn') {
    // #38: bookworm's NSS 3.87 lists no CKM_EDDSA. No Ed25519 key is made, and the probe the box runs at start
    // refuses this configuration by the selector's key, before any statement.
    t.same(keys, [], 'no Ed25519 key in a token without EdDSA')
    const domains = [{ domain: 'bank.example', smimeKey: 'smime/bank', dkimSelector: 'sg1', dkimEd25519Selector: 'ed1' }]
    await t.rejects(probeFor(s.hsm, parseConfig({ dataDir: s.dir, signing: { domains } })), {
      key: 'signing.domains[0].dkimEd25519Selector',
      message: /CKM_EDDSA/,
    })
    return
  }
  t.match(
    keys.find((k) => k.kind === 'private'),
    { keyType: 'ed25519', sensitive: true, extractable: false },
  )
  const ed = dkimTxtValue(await s.hsm.keys.publicKey(dkimKeyLabel('bank.example', 'ed1')))
  t.match(ed, /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/, 'the record carries the bare 32-byte key')
  const records = { sg1: await s.dkimRecord(), ed1: ed }
  const signed = await s.sign(FIXTURES['plain text']!)
  t.match(signed.toString('latin1'), /^DKIM-Signature: v=1; a=ed25519-sha256; [^]*\r\nDKIM-Signature: v=1; a=rsa-sha256;/, 'Ed25519 on top of RSA')
  t.equal(await pythonDkimVerify(signed, records, 0), true, 'python3-dkim: ed25519-sha256 passes')
  t.equal(await pythonDkimVerify(signed, records, 1), true, 'python3-dkim: rsa-sha256 passes')
  t.same(await mailauthDkimVerify(signed, records), ['pass', 'pass'], 'mailauth: both pass')
  const tampered = Buffer.from(signed.toString('latin1').replace('Subject: ', 'Subject: X'), 'latin1')
  t.equal(await pythonDkimVerify(tampered, records, 0), false)
  t.same(await mailauthDkimVerify(tampered, records), ['fail', 'fail'])
})
