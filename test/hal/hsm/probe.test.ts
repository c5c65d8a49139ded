import t from 'tap'
import { MECHANISMS, probe } from '../../../hal/hsm/probe.ts'
import { devHsm } from '../../helpers/hsm.ts'
import { missingMechanisms, refusedSecretKeyTemplates } from '../../helpers/hsm-quirks.ts'

t.test('#38: the probe reads the token and its mechanisms, and makes and destroys a throw-away key of each type', async (t) => {
  const { hsm } = await devHsm(t)
  const started = performance.now()
  const r = await probe(hsm.token, hsm.keys, ['ec-p256', 'ed25519', 'aes-256', 'hmac-sha256', 'rsa-2048'], [{ key: 'hsm', mechanism: 'CKM_AES_GCM' }])
  t.comment(`probe took ${(performance.now() - started).toFixed(0)} ms`)
  t.match(r.token, { label: 'sg-test', manufacturer: /SoftHSM/, loginRequired: true })
  for (const name of ['CKM_SHA256_RSA_PKCS', 'CKM_ECDSA', 'CKM_AES_GCM', 'CKM_SHA256_HMAC', 'CKM_EDDSA'])
    t.match(r.mechanisms[name], { flags: Array }, `${name} is listed with its flags`)
  t.ok((r.mechanisms.CKM_RSA_PKCS_KEY_PAIR_GEN as { maxKeySize: number }).maxKeySize >= 3072, 'RSA key sizes are read')
  t.same(r.keys, { 'ec-p256': 'ok', ed25519: 'ok', 'aes-256': 'ok', 'hmac-sha256': 'ok', 'rsa-2048': 'ok' }, 'every type made with the box templates')
  t.same(r.missing, [])
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
