import { createCipheriv, randomBytes } from 'node:crypto'
import { KeyImport } from './import.ts'
import { HsmError } from './errors.ts'
import { GCM_LAYOUTS, type GcmLayout, type KeyPairType, type KeyStore, type SecretKeyType } from './keys.ts'
import { CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA, cleanLabel, pkcs11 as P } from './pkcs11.ts'
import type { Token } from './token.ts'

/**
 * What a token can do, asked before the box relies on it (#38, M6, S9): its
 * information, the mechanisms the box uses with their key sizes and flags, and a
 * throw-away key of each type the box makes, made with the box's own templates
 * (KeyStore's) and destroyed at once — so a vendor module that refuses a
 * template or lacks a mechanism is found at start, not at the first statement.
 */

/** The mechanisms the box uses, by their PKCS#11 names. */
export const MECHANISMS: Readonly<Record<string, number>> = {
  CKM_RSA_PKCS_KEY_PAIR_GEN: P.CKM_RSA_PKCS_KEY_PAIR_GEN,
  CKM_SHA256_RSA_PKCS: P.CKM_SHA256_RSA_PKCS,
  CKM_SHA256_RSA_PKCS_PSS: P.CKM_SHA256_RSA_PKCS_PSS,
  CKM_EC_KEY_PAIR_GEN: P.CKM_EC_KEY_PAIR_GEN,
  CKM_ECDSA: P.CKM_ECDSA,
  CKM_EC_EDWARDS_KEY_PAIR_GEN,
  CKM_EDDSA,
  CKM_AES_KEY_GEN: P.CKM_AES_KEY_GEN,
  CKM_AES_GCM: P.CKM_AES_GCM,
  CKM_GENERIC_SECRET_KEY_GEN: P.CKM_GENERIC_SECRET_KEY_GEN,
  CKM_SHA256_HMAC: P.CKM_SHA256_HMAC,
}

/** The mechanisms making and using a key of each type need. */
export const MECHANISMS_OF: Readonly<Record<KeyPairType | SecretKeyType, readonly string[]>> = {
  'rsa-2048': ['CKM_RSA_PKCS_KEY_PAIR_GEN', 'CKM_SHA256_RSA_PKCS'],
  'rsa-3072': ['CKM_RSA_PKCS_KEY_PAIR_GEN', 'CKM_SHA256_RSA_PKCS'],
  'ec-p256': ['CKM_EC_KEY_PAIR_GEN', 'CKM_ECDSA'],
  ed25519: ['CKM_EC_EDWARDS_KEY_PAIR_GEN', 'CKM_EDDSA'],
  'aes-256': ['CKM_AES_KEY_GEN', 'CKM_AES_GCM'],
  'hmac-sha256': ['CKM_GENERIC_SECRET_KEY_GEN', 'CKM_SHA256_HMAC'],
}

/** Something the configuration asks of the token: the config key that asks, and the mechanism it needs. */
export interface Need {
  key: string
  mechanism: string
}

export interface ProbeReport {
  token: { label: string; manufacturer: string; model: string; firmware: string; maxSessions: string; loginRequired: boolean; pinLength: string }
  /** The box's mechanisms the token lists, with key sizes and flags (names of the CKF_ flags that are set). */
  mechanisms: Record<string, { minKeySize: number; maxKeySize: number; flags: string[] } | 'absent'>
  /** A throw-away key of each type: 'ok' (made and destroyed), or the token's refusal. */
  keys: Record<string, string>
  /** What the configuration needs and the token lacks. */
  missing: Need[]
  /**
   * M6: each throw-away key, made non-extractable with the box's templates, offered to `C_WrapKey` under a
   * session AES key the probe makes: 'refused (CKR_…)' is what M6 needs; 'wrapped' means the token handed the key
   * out (NSS softokn does, in FIPS mode too, #38); 'not tried (…)' when no wrapping key could be made.
   */
  wrap: Record<string, string>
  /** The key types the token handed out wrapped: the box refuses such a token (M6). */
  extractable: string[]
  /**
   * #38: AES-GCM in each parameter layout: PKCS#11 2.40/3.0's `CK_GCM_PARAMS` (with `ulIvBits`, what the box
   * passes) and the older draft layout without it. 'ok' (node:crypto agrees), 'wrong result', or the token's
   * refusal; absent when the token makes no AES key.
   */
  gcm?: Record<GcmLayout, string>
}

export type { GcmLayout } from './keys.ts'

/**
 * A session AES key of a value the probe knows, allowed one use (CKA_ENCRYPT). Brought in wrapped
 * (import.ts), as the box imports keys: a token in FIPS mode refuses a plaintext CKA_VALUE (#38).
 */
function sessionAesKey(token: Token, value: Buffer, use: number): Promise<Buffer> {
  return token.run('C_UnwrapKey', async (s, p, slot) => {
    const importer = new KeyImport(p, s, slot)
    try {
      return await importer.secret(value, [
        { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
        { type: P.CKA_KEY_TYPE, value: P.CKK_AES },
        { type: P.CKA_TOKEN, value: false },
        { type: use, value: true },
      ])
    } finally {
      importer.close()
    }
  })
}

/**
 * AES-GCM in each parameter layout under a session key of known value, on a token thread as the spool runs it,
 * compared with node:crypto's AES-256-GCM over the same key, IV and AAD: a module that reads one layout as the
 * other can still answer with bytes, so an answer is not proof; the same ciphertext and tag is (softokn refused
 * the draft layout in three runs of four and answered it right in the fourth).
 */
async function tryGcm(token: Token): Promise<Record<GcmLayout, string>> {
  const value = randomBytes(32)
  let key: Buffer
  try {
    key = await sessionAesKey(token, value, P.CKA_ENCRYPT)
  } catch (err) {
    const why = `not tried (a known AES key refused: ${err instanceof HsmError ? (err.ckr ?? err.code) : (err as Error).message})`
    return { 'pkcs11-2.40': why, draft: why }
  }
  const out = {} as Record<GcmLayout, string>
  try {
    for (const [layout, parameter] of Object.entries(GCM_LAYOUTS) as [GcmLayout, (iv: Buffer, aad: Buffer) => Record<string, unknown>][]) {
      const iv = randomBytes(12)
      const aad = Buffer.from('statement-gateway probe')
      const plain = randomBytes(16)
      const c = createCipheriv('aes-256-gcm', value, iv).setAAD(aad)
      const expected = Buffer.concat([c.update(plain), c.final(), c.getAuthTag()])
      const r = await token
        .runWhole('C_Encrypt', key, 'encrypt', { mechanism: P.CKM_AES_GCM, parameter: parameter(iv, aad) }, plain, 64)
        .catch((err: unknown) => err)
      if (Buffer.isBuffer(r)) out[layout] = r.equals(expected) ? 'ok' : 'wrong result (the layout is read otherwise)'
      else out[layout] = r instanceof HsmError ? (r.ckr ?? r.code) : String(r)
    }
  } finally {
    await token.run('C_DestroyObject', (s, p) => p.C_DestroyObject(s, key)).catch(() => 0)
  }
  return out
}

/** Ways a key could leave a token wrapped, tried in turn; the first that gives bytes shows the key is out. */
const WRAP_MECHANISMS = [P.CKM_AES_KEY_WRAP_PAD, P.CKM_AES_KEY_WRAP, P.CKM_AES_CBC_PAD]

/** M6: offers the key `label` to C_WrapKey under a session AES key the probe makes; what the token did. */
async function tryWrap(token: Token, keys: KeyStore, label: string, kind: 'private' | 'secret'): Promise<string> {
  const target = await keys.handle(label, kind)
  let wrapping: Buffer
  try {
    // Made in the token: whether bytes come out is the finding, so its value need not be known (and bringing a
    // known one in costs the import's RSA transport key, import.ts).
    wrapping = await token.run('C_GenerateKey', (s, p) =>
      p.C_GenerateKeyAsync(s, { mechanism: P.CKM_AES_KEY_GEN }, [
        { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
        { type: P.CKA_KEY_TYPE, value: P.CKK_AES },
        { type: P.CKA_TOKEN, value: false },
        { type: P.CKA_VALUE_LEN, value: 32 },
        { type: P.CKA_WRAP, value: true },
      ]),
    )
  } catch (err) {
    return `not tried (wrapping key refused: ${err instanceof HsmError ? (err.ckr ?? err.code) : (err as Error).message})`
  }
  const refusals: string[] = []
  try {
    for (const mechanism of WRAP_MECHANISMS) {
      const out = await token
        .run('C_WrapKey', (s, p) =>
          p.C_WrapKey(s, { mechanism, ...(mechanism === P.CKM_AES_CBC_PAD ? { parameter: Buffer.alloc(16) } : {}) }, wrapping, target, Buffer.alloc(8192)),
        )
        .catch((err: unknown) => err)
      if (Buffer.isBuffer(out) && out.length > 0) return 'wrapped'
      refusals.push(out instanceof HsmError ? (out.ckr ?? out.code) : String(out))
    }
  } finally {
    await token.run('C_DestroyObject', (s, p) => p.C_DestroyObject(s, wrapping)).catch(() => 0)
  }
  return `refused (${[...new Set(refusals)].join(', ')})`
}

const FLAGS: [string, number][] = [
  ['hw', 0x1],
  ['encrypt', 0x100],
  ['decrypt', 0x200],
  ['digest', 0x400],
  ['sign', 0x800],
  ['verify', 0x2000],
  ['generate', 0x8000],
  ['generate-key-pair', 0x10000],
  ['wrap', 0x20000],
  ['unwrap', 0x40000],
]

/** CK_EFFECTIVELY_INFINITE (0) and CK_UNAVAILABLE_INFORMATION (~0) as words. */
const count = (n: number) => (n === 0 ? 'effectively infinite' : n >= 0xffffffff ? 'unavailable' : String(n))

export async function probe(token: Token, keys: KeyStore, types: readonly (KeyPairType | SecretKeyType)[], needs: readonly Need[]): Promise<ProbeReport> {
  const { info, listed } = await token.run('C_GetMechanismList', (_s, p, slot) => {
    const i = p.C_GetTokenInfo(slot)
    return { info: i, listed: new Set(p.C_GetMechanismList(slot)) }
  })
  const mechanisms: ProbeReport['mechanisms'] = {}
  for (const [name, value] of Object.entries(MECHANISMS)) {
    mechanisms[name] = listed.has(value)
      ? await token.run('C_GetMechanismInfo', (_s, p, slot) => {
          const m = p.C_GetMechanismInfo(slot, value)
          return { minKeySize: m.minKeySize, maxKeySize: m.maxKeySize, flags: FLAGS.filter(([, f]) => (m.flags & f) !== 0).map(([n]) => n) }
        })
      : 'absent'
  }
  const made: ProbeReport['keys'] = {}
  const wrap: ProbeReport['wrap'] = {}
  let gcm: ProbeReport['gcm']
  for (const type of new Set(types)) {
    const label = `probe/${type}/${randomBytes(6).toString('hex')}`
    try {
      const secret = type === 'aes-256' || type === 'hmac-sha256'
      if (secret) await keys.generateSecretKey(label, type)
      else await keys.generateKeyPair(label, type)
      made[type] = 'ok'
      wrap[type] = await tryWrap(token, keys, label, secret ? 'secret' : 'private')
      if (type === 'aes-256' && mechanisms.CKM_AES_GCM !== 'absent') gcm = await tryGcm(token)
    } catch (err) {
      made[type] = err instanceof HsmError ? `${err.code}${err.ckr ? ` (${err.ckr})` : ''}` : (err as Error).message
    } finally {
      await keys.destroy(label).catch(() => 0)
    }
  }
  const missing = needs.filter((n) => mechanisms[n.mechanism] === 'absent')
  const version = (v: { major: number; minor: number }) => `${v.major}.${v.minor}`
  return {
    token: {
      label: cleanLabel(info.label),
      manufacturer: cleanLabel(info.manufacturerID),
      model: cleanLabel(info.model),
      firmware: version(info.firmwareVersion),
      maxSessions: count(info.maxSessionCount),
      loginRequired: (info.flags & P.CKF_LOGIN_REQUIRED) !== 0,
      pinLength: `${info.minPinLen}–${info.maxPinLen}`,
    },
    mechanisms,
    keys: made,
    missing,
    wrap,
    extractable: Object.keys(wrap).filter((t) => wrap[t] === 'wrapped'),
    ...(gcm ? { gcm } : {}),
  }
}
