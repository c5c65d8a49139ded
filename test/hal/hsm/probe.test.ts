import t from 'tap'
import { MECHANISMS, probe } from '../../../hal/hsm/probe.ts'
import { probeFor } from '../../../firmware/keys/service.ts'
import { testConfig } from '../../helpers/box.ts'
import { devHsm, TEST_FIPS } from '../../helpers/hsm.ts'
import { missingMechanisms, refusedSecretKeyTemplates } from '../../helpers/hsm-quirks.ts'

const ALL = ['ec-p256', 'ed25519', 'aes-256', 'hmac-sha256', 'rsa-2048'] as const

t.test('#38: the probe reads the token and its mechanisms, and makes and destroys a throw-away key of each type', async (t) => {
  const { hsm } = await devHsm(t, { token: 'softhsm' })
  const started = performance.now()
  const r = await probe(hsm.token, hsm.keys, ['ec-p256', 'ed25519', 'aes-256', 'hmac-sha256', 'rsa-2048'], [{ key: 'hsm', mechanism: 'CKM_AES_GCM' }])
  t.comment(`probe took ${(performance.now() - started).toFixed(0)} ms`)
  t.match(r.token, { label: 'sg-test', manufacturer: /SoftHSM/, loginRequired: true })
  for (const name of ['CKM_SHA256_RSA_PKCS', 'CKM_ECDSA', 'CKM_AES_GCM', 'CKM_SHA256_HMAC', 'CKM_EDDSA'])
    t.match(r.mechanisms[name], { flags: Array }, `${name} is listed with its flags`)
  t.ok((r.mechanisms.CKM_RSA_PKCS_KEY_PAIR_GEN as { maxKeySize: number }).maxKeySize >= 3072, 'RSA key sizes are read')
  t.same(r.keys, { 'ec-p256': 'ok', ed25519: 'ok', 'aes-256': 'ok', 'hmac-sha256': 'ok', 'rsa-2048': 'ok' }, 'every type made with the box templates')
  t.same(r.missing, [])
  // M6: SoftHSM2 keeps a key marked non-extractable in: C_WrapKey under a key of ours is refused for every type.
  for (const type of ALL) t.match(r.wrap[type], /^refused \(.*CKR_KEY_UNEXTRACTABLE/, `${type}: not wrapped out (${r.wrap[type]})`)
  t.same(r.extractable, [])
  t.same(r.gcm, { 'pkcs11-2.40': 'ok', draft: 'ok' }, 'SoftHSM reads both AES-GCM parameter layouts')
  t.notOk(
    (await hsm.keys.list()).some((k) => k.label.startsWith('probe/')),
    'and every throw-away key destroyed',
  )
})

t.test('#38: a token that lacks a mechanism or refuses a template is reported by the probe, not at the first statement', async (t) => {
  const { hsm } = await devHsm(t, {
    quirks: (p) => refusedSecretKeyTemplates()(missingMechanisms([MECHANISMS.CKM_SHA256_RSA_PKCS_PSS!, MECHANISMS.CKM_EDDSA!])(p)),
  })
  const r = await probe(
    hsm.token,
    hsm.keys,
    ['aes-256', 'ec-p256'],
    [
      { key: 'signing.domains[0].smimeAlgorithm', mechanism: 'CKM_SHA256_RSA_PKCS_PSS' },
      { key: 'signing.domains[0].dkimEd25519Selector', mechanism: 'CKM_EDDSA' },
      { key: 'hsm', mechanism: 'CKM_ECDSA' },
    ],
  )
  t.equal(r.mechanisms.CKM_SHA256_RSA_PKCS_PSS, 'absent')
  t.same(
    r.missing.map((m) => m.key),
    ['signing.domains[0].smimeAlgorithm', 'signing.domains[0].dkimEd25519Selector'],
    'the config keys that need what is missing',
  )
  t.match(r.keys['aes-256'], /CKR_TEMPLATE_INCONSISTENT/, "the refused template, in the token's words")
  t.equal(r.keys['ec-p256'], 'ok')
})

t.test('#38, M6: NSS softokn, the second implementation — its probe, and a token that wraps out non-extractable keys is refused', async (t) => {
  const { hsm } = await devHsm(t, { token: 'softokn' })
  const r = await probe(hsm.token, hsm.keys, [...ALL], [{ key: 'signing.domains[0].dkimEd25519Selector', mechanism: 'CKM_EDDSA' }])
  t.comment(JSON.stringify(r))
  t.match(r.token, { label: TEST_FIPS ? 'NSS FIPS 140-2 Certificate DB' : 'NSS Certificate DB', manufacturer: /Mozilla/, loginRequired: true })
  for (const name of ['CKM_RSA_PKCS_KEY_PAIR_GEN', 'CKM_SHA256_RSA_PKCS', 'CKM_SHA256_RSA_PKCS_PSS', 'CKM_ECDSA', 'CKM_AES_GCM', 'CKM_SHA256_HMAC'])
    t.match(r.mechanisms[name], { flags: Array }, `${name} is listed`)
  // bookworm's NSS 3.87 has no EdDSA: an Ed25519 DKIM selector is refused by name, and the throw-away key fails.
  t.equal(r.mechanisms.CKM_EDDSA, 'absent')
  t.same(r.missing, [{ key: 'signing.domains[0].dkimEd25519Selector', mechanism: 'CKM_EDDSA' }])
  t.notMatch(r.keys.ed25519, /^ok$/)
  for (const type of ['ec-p256', 'aes-256', 'hmac-sha256', 'rsa-2048'] as const) t.equal(r.keys[type], 'ok', `${type} made with the box templates`)
  // softokn hands keys marked CKA_EXTRACTABLE=false out under a wrapping key, in FIPS mode too (seen in this
  // test's runs; SoftHSM2 refuses): the probe says so for each type, and the box will not use the token.
  t.equal(r.wrap['rsa-2048'], 'wrapped', 'the RSA private key left the token wrapped')
  t.ok(r.extractable.includes('rsa-2048'))
  // The PKCS#11 2.40 layout the box passes is read right (node:crypto agrees). The draft layout softokn answers
  // unevenly — refused (CKR_MECHANISM_PARAM_INVALID) in three runs of four, right in the fourth — never wrongly.
  t.equal(r.gcm?.['pkcs11-2.40'], 'ok', 'softokn reads the 2.40 GCM layout the box uses')
  t.match(r.gcm?.draft, /^(ok|CKR_MECHANISM_PARAM_INVALID)$/, `the draft layout: ${r.gcm?.draft}`)
  const config = await testConfig(t, { signing: { domains: [{ domain: 'bank.example', dkimSelector: 'sg1' }] } })
  await t.rejects(probeFor(hsm, config), { key: 'hsm.module', message: /wrapped out keys the box marks non-extractable \(.*rsa-2048.*\).*M6/ })
  t.notOk(
    (await hsm.keys.list()).some((k) => k.label.startsWith('probe/')),
    'every throw-away key destroyed',
  )
})
