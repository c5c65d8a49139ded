import t from 'tap'
import { base32 } from '../../../hal/crypto/base32.ts'
import { hotp, newTotpSecret, otpauthUri, stepAt, totp, verifyTotp } from '../../../firmware/admin/totp.ts'

t.test('RFC 4226 appendix D: the HOTP values of the test secret', async (t) => {
  const secret = Buffer.from('12345678901234567890')
  const expected = ['755224', '287082', '359152', '969429', '338314', '254676', '287922', '162583', '399871', '520489']
  expected.forEach((code, counter) => t.equal(hotp(secret, counter), code, `counter ${counter}`))
})

t.test('RFC 6238 appendix B: the TOTP values for SHA-1, SHA-256 and SHA-512', async (t) => {
  const seeds = {
    sha1: Buffer.from('12345678901234567890'),
    sha256: Buffer.from('12345678901234567890123456789012'),
    sha512: Buffer.from('1234567890123456789012345678901234567890123456789012345678901234'),
  } as const
  const table: [number, string, string, string][] = [
    [59, '94287082', '46119246', '90693936'],
    [1111111109, '07081804', '68084774', '25091201'],
    [1111111111, '14050471', '67062674', '99943326'],
    [1234567890, '89005924', '91819424', '93441116'],
    [2000000000, '69279037', '90698825', '38618901'],
    [20000000000, '65353130', '77737706', '47863826'],
  ]
  for (const [seconds, sha1, sha256, sha512] of table) {
    t.equal(totp(seeds.sha1, seconds * 1000, 8, 'sha1'), sha1, `SHA-1 at ${seconds}`)
    t.equal(totp(seeds.sha256, seconds * 1000, 8, 'sha256'), sha256, `SHA-256 at ${seconds}`)
    t.equal(totp(seeds.sha512, seconds * 1000, 8, 'sha512'), sha512, `SHA-512 at ${seconds}`)
  }
})

t.test('S4: a code is taken one step either side of the clock, and never twice', async (t) => {
  const secret = newTotpSecret()
  t.equal(secret.length, 20)
  const now = Date.UTC(2026, 10, 26, 9, 0, 10)
  const step = stepAt(now)
  t.equal(verifyTotp(secret, totp(secret, now), now), step)
  t.equal(verifyTotp(secret, totp(secret, now - 30_000), now), step - 1, 'the previous step (a slow typist)')
  t.equal(verifyTotp(secret, totp(secret, now + 30_000), now), step + 1, 'the next step (a clock a little ahead)')
  t.equal(verifyTotp(secret, totp(secret, now - 60_000), now), undefined, 'two steps old')
  t.equal(verifyTotp(secret, totp(secret, now), now, step), undefined, 'a replay of the step already used')
  t.equal(verifyTotp(secret, totp(secret, now - 30_000), now, step), undefined, 'nor an earlier one')
  t.equal(verifyTotp(secret, totp(secret, now + 30_000), now, step), step + 1, 'a later one is fine')
  const code = totp(secret, now)
  t.equal(verifyTotp(secret, `${code.slice(0, 3)} ${code.slice(3)}`, now), step, 'spaces as apps show them')
  t.equal(verifyTotp(secret, '12345', now), undefined)
  t.equal(verifyTotp(secret, '1234567', now), undefined)
  t.equal(verifyTotp(secret, 'abcdef', now), undefined)
})

t.test('the otpauth URI authenticator apps read', async (t) => {
  const secret = Buffer.from('12345678901234567890')
  const uri = new URL(otpauthUri(secret, 'wang admin', 'Statement Gateway'))
  t.equal(uri.protocol, 'otpauth:')
  t.equal(uri.host, 'totp')
  t.equal(decodeURIComponent(uri.pathname), '/Statement Gateway:wang admin')
  t.equal(uri.searchParams.get('secret'), base32(secret).toUpperCase())
  t.equal(uri.searchParams.get('secret'), 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ')
  t.equal(uri.searchParams.get('issuer'), 'Statement Gateway')
  t.equal(uri.searchParams.get('digits'), '6')
  t.equal(uri.searchParams.get('period'), '30')
})
