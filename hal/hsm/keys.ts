import { createHash, createPublicKey, randomBytes, type KeyObject } from 'node:crypto'
import * as der from '../crypto/der.ts'
import { HsmError } from './errors.ts'
import { CKK_EC_EDWARDS, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA, pkcs11 as P, ulong, type Handle, type PKCS11 } from './pkcs11.ts'
import type { OffThreadJob } from './off-thread.ts'
import type { Token } from './token.ts'

/** S2: signature keys are RSA-2048 or larger, or ECC of 256 bits (P-256, Ed25519); nothing weaker can be made. */
export type KeyPairType = 'rsa-2048' | 'rsa-3072' | 'ec-p256' | 'ed25519'
export type SecretKeyType = 'aes-256' | 'hmac-sha256'
export type SignAlgorithm = 'rsa-pkcs1-sha256' | 'rsa-pss-sha256' | 'ecdsa-p256-sha256' | 'ed25519'

export interface KeyInfo {
  label: string
  id: Buffer
  kind: 'private' | 'public' | 'secret' | 'certificate'
  keyType: string
  sensitive: boolean | undefined
  extractable: boolean | undefined
}

/** DER of the named curve OID prime256v1 (CKA_EC_PARAMS). */
const P256_PARAMS = der.oid('1.2.840.10045.3.1.7')
/** id-Ed25519 (RFC 8410) as CKA_EC_PARAMS for an Edwards-curve key (PKCS#11 v3.0). */
const ED25519_PARAMS = der.oid('1.3.101.112')

const CLASS = {
  private: P.CKO_PRIVATE_KEY,
  public: P.CKO_PUBLIC_KEY,
  secret: P.CKO_SECRET_KEY,
  certificate: P.CKO_CERTIFICATE,
} as const

/**
 * Key operations on a token (M6, S9). Private and secret keys are created
 * CKA_SENSITIVE, non-extractable and CKA_PRIVATE: their values never leave the
 * token, and every use is a call into it. Objects are named by label; handles
 * are cached per connection and forgotten when the token reconnects.
 */
export class KeyStore {
  readonly #token: Token
  readonly #handles = new Map<string, Handle>()
  /** Objects found in this token before: if one vanishes, the token was removed or swapped. */
  readonly #seen = new Set<string>()
  /** How CKM_AES_GCM's parameters are passed: the 2.40 layout unless the probe found the token reads only the draft (#38). */
  gcmLayout: GcmLayout = 'pkcs11-2.40'

  constructor(token: Token) {
    this.#token = token
    token.onReconnect = () => this.#handles.clear()
  }

  /** Generates a key pair; refuses if the label is taken. Returns the public key. */
  async generateKeyPair(label: string, type: KeyPairType): Promise<KeyObject> {
    if (await this.exists(label, 'private')) throw new HsmError('EHSM_KEY_EXISTS', label)
    const id = randomBytes(16)
    const common = [
      { type: P.CKA_TOKEN, value: true },
      { type: P.CKA_LABEL, value: label },
      { type: P.CKA_ID, value: id },
    ]
    const pub = [...common, { type: P.CKA_PRIVATE, value: false }, { type: P.CKA_VERIFY, value: true }]
    const priv = [
      ...common,
      { type: P.CKA_PRIVATE, value: true },
      { type: P.CKA_SENSITIVE, value: true },
      { type: P.CKA_EXTRACTABLE, value: false },
      { type: P.CKA_SIGN, value: true },
    ]
    let mechanism: number
    if (type === 'ec-p256') {
      mechanism = P.CKM_EC_KEY_PAIR_GEN
      pub.push({ type: P.CKA_EC_PARAMS, value: P256_PARAMS } as never)
    } else if (type === 'ed25519') {
      mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN
      pub.push({ type: P.CKA_EC_PARAMS, value: ED25519_PARAMS } as never)
    } else {
      mechanism = P.CKM_RSA_PKCS_KEY_PAIR_GEN
      pub.push({ type: P.CKA_MODULUS_BITS, value: type === 'rsa-2048' ? 2048 : 3072 } as never)
      pub.push({ type: P.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) })
    }
    await this.#token.run('C_GenerateKeyPair', (s, p) => p.C_GenerateKeyPairAsync(s, { mechanism }, pub, priv))
    return this.publicKey(label)
  }

  /** Returns the existing pair's public key, generating the pair first if absent. */
  /** Calls in flight per label: two callers that both find a key missing would each make one under the same label. */
  readonly #ensuring = new Map<string, Promise<unknown>>()

  #once<T>(label: string, make: () => Promise<T>): Promise<T> {
    const running = this.#ensuring.get(label) as Promise<T> | undefined
    if (running) return running
    const p = make().finally(() => this.#ensuring.delete(label))
    this.#ensuring.set(label, p)
    return p
  }

  ensureKeyPair(label: string, type: KeyPairType): Promise<{ publicKey: KeyObject; created: boolean }> {
    return this.#once(label, async () => {
      if (await this.exists(label, 'private')) return { publicKey: await this.publicKey(label), created: false }
      return { publicKey: await this.generateKeyPair(label, type), created: true }
    })
  }

  async generateSecretKey(label: string, type: SecretKeyType): Promise<void> {
    if (await this.exists(label, 'secret')) throw new HsmError('EHSM_KEY_EXISTS', label)
    const aes = type === 'aes-256'
    const template = [
      { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
      { type: P.CKA_KEY_TYPE, value: aes ? P.CKK_AES : P.CKK_GENERIC_SECRET },
      { type: P.CKA_TOKEN, value: true },
      { type: P.CKA_LABEL, value: label },
      { type: P.CKA_ID, value: randomBytes(16) },
      { type: P.CKA_PRIVATE, value: true },
      { type: P.CKA_SENSITIVE, value: true },
      { type: P.CKA_EXTRACTABLE, value: false },
      { type: P.CKA_VALUE_LEN, value: 32 },
      ...(aes
        ? [
            { type: P.CKA_ENCRYPT, value: true },
            { type: P.CKA_DECRYPT, value: true },
          ]
        : [
            { type: P.CKA_SIGN, value: true },
            { type: P.CKA_VERIFY, value: true },
          ]),
    ]
    const mechanism = aes ? P.CKM_AES_KEY_GEN : P.CKM_GENERIC_SECRET_KEY_GEN
    // Asynchronous: a new spool epoch's key is made while the box delivers (#33: it took 0.5 s on the main thread).
    await this.#token.run('C_GenerateKey', (s, p) => p.C_GenerateKeyAsync(s, { mechanism }, template))
  }

  ensureSecretKey(label: string, type: SecretKeyType): Promise<boolean> {
    return this.#once(`secret:${label}`, async () => {
      if (await this.exists(label, 'secret')) return false
      await this.generateSecretKey(label, type)
      return true
    })
  }

  async exists(label: string, kind: keyof typeof CLASS): Promise<boolean> {
    return (await this.#find(label, kind, false)) !== undefined
  }

  /** The public key of a pair, rebuilt from the token's public attributes. */
  async publicKey(label: string): Promise<KeyObject> {
    return this.#withObject(label, 'public', 'C_GetAttributeValue', (s, p, h) => {
      const [type] = p.C_GetAttributeValue(s, h, [{ type: P.CKA_KEY_TYPE }])
      if (ulong(type!.value) === P.CKK_RSA) {
        const [n, e] = p.C_GetAttributeValue(s, h, [{ type: P.CKA_MODULUS }, { type: P.CKA_PUBLIC_EXPONENT }])
        return createPublicKey({ key: { kty: 'RSA', n: b64u(n!.value), e: b64u(e!.value) }, format: 'jwk' })
      }
      const [point] = p.C_GetAttributeValue(s, h, [{ type: P.CKA_EC_POINT }])
      if (ulong(type!.value) === CKK_EC_EDWARDS) {
        return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64u(unwrapOctetString(point!.value)) }, format: 'jwk' })
      }
      const q = unwrapOctetString(point!.value) // 04 || X || Y
      return createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: b64u(q.subarray(1, 33)), y: b64u(q.subarray(33, 65)) }, format: 'jwk' })
    })
  }

  /**
   * Signs inside the token. RSA mechanisms hash inside the token; for ECDSA the
   * SHA-256 digest is computed here and CKM_ECDSA signs it (the form every
   * token supports), and the raw r||s is returned DER-encoded as X.509/CMS want.
   */
  /** Told how long each signature took, in seconds (the admin page's HSM latency histogram, S11). */
  onSign: ((seconds: number) => void) | undefined

  async sign(label: string, algorithm: SignAlgorithm, data: Buffer): Promise<Buffer> {
    const started = performance.now()
    let mechanism: { mechanism: number; parameter?: unknown }
    let input = data
    switch (algorithm) {
      case 'rsa-pkcs1-sha256':
        mechanism = { mechanism: P.CKM_SHA256_RSA_PKCS }
        break
      case 'rsa-pss-sha256':
        mechanism = {
          mechanism: P.CKM_SHA256_RSA_PKCS_PSS,
          parameter: { type: P.CK_PARAMS_RSA_PSS, hashAlg: P.CKM_SHA256, mgf: P.CKG_MGF1_SHA256, saltLen: 32 },
        }
        break
      case 'ecdsa-p256-sha256':
        mechanism = { mechanism: P.CKM_ECDSA }
        input = createHash('sha256').update(data).digest()
        break
      case 'ed25519':
        mechanism = { mechanism: CKM_EDDSA } // pure Ed25519 over the data as given
        break
    }
    const sig = await this.#whole(label, 'private', 'C_Sign', 'sign', mechanism as OffThreadJob['mechanism'], input, 512)
    this.onSign?.((performance.now() - started) / 1000)
    return algorithm === 'ecdsa-p256-sha256' ? ecdsaRawToDer(sig) : sig
  }

  /** AES-256-GCM encryption of a small secret (a spool data key) under a token key. */
  async encrypt(label: string, plaintext: Buffer, aad: Buffer = Buffer.alloc(0)): Promise<{ iv: Buffer; ciphertext: Buffer }> {
    const iv = randomBytes(12)
    const ciphertext = await this.#whole(label, 'secret', 'C_Encrypt', 'encrypt', gcm(this.gcmLayout, iv, aad), plaintext, plaintext.length + 16)
    return { iv, ciphertext }
  }

  /**
   * Decrypts what encrypt() made. A failed tag check is EHSM_DATA_INVALID. Some
   * tokens (SoftHSM) report it as CKR_GENERAL_ERROR; then the token is asked
   * for its info: if it answers, the fault was the data, otherwise the token.
   */
  async decrypt(label: string, iv: Buffer, ciphertext: Buffer, aad: Buffer = Buffer.alloc(0)): Promise<Buffer> {
    try {
      return await this.#whole(label, 'secret', 'C_Decrypt', 'decrypt', gcm(this.gcmLayout, iv, aad), ciphertext, ciphertext.length)
    } catch (err) {
      if (err instanceof HsmError && err.ckr === 'CKR_GENERAL_ERROR') {
        await this.#token.run('C_GetTokenInfo', (_s, p, slot) => p.C_GetTokenInfo(slot))
        throw new HsmError('EHSM_DATA_INVALID', 'AES-GCM authentication failed', { ckr: err.ckr, cause: err })
      }
      throw err
    }
  }

  /** HMAC-SHA256 with a token-resident secret (admin password pepper, S3; recipient hashes, S6). */
  async hmac(label: string, data: Buffer): Promise<Buffer> {
    return this.#whole(label, 'secret', 'C_Sign', 'sign', { mechanism: P.CKM_SHA256_HMAC }, data, 32)
  }

  async random(bytes: number): Promise<Buffer> {
    return this.#token.run('C_GenerateRandom', (s, p) => p.C_GenerateRandom(s, Buffer.alloc(bytes)))
  }

  /** Destroys every object with this label (key pair halves, secret key, certificate). Returns how many. */
  async destroy(label: string): Promise<number> {
    const n = await this.#token.run('C_DestroyObject', (s, p) => {
      const handles = findAll(p, s, [{ type: P.CKA_LABEL, value: label }])
      for (const h of handles) p.C_DestroyObject(s, h)
      return handles.length
    })
    for (const kind of Object.keys(CLASS)) {
      this.#handles.delete(`${kind}\0${label}`)
      this.#seen.delete(`${kind}\0${label}`)
    }
    return n
  }

  /** Every key and certificate in the token, with the attributes that show it is protected. */
  async list(): Promise<KeyInfo[]> {
    // Keys and certificates only: a token holds other objects too (softokn's FIPS mode a validation object, a
    // vendor data objects), which have no CKA_ID or CKA_KEY_TYPE (CKR_ATTRIBUTE_TYPE_INVALID).
    const classes = Object.values<number>(CLASS)
    return this.#token.run('C_FindObjects', (s, p) =>
      findAll(p, s, []).flatMap((h) => {
        const c = ulong(p.C_GetAttributeValue(s, h, [{ type: P.CKA_CLASS }])[0]!.value)
        if (!classes.includes(c)) return []
        const [label, id] = p.C_GetAttributeValue(s, h, [{ type: P.CKA_LABEL }, { type: P.CKA_ID }])
        const kind = Object.entries(CLASS).find(([, v]) => v === c)![0] as KeyInfo['kind']
        const flag = (t: number) => {
          try {
            const [a] = p.C_GetAttributeValue(s, h, [{ type: t }])
            return a!.value.length ? a!.value[0] !== 0 : undefined
          } catch {
            return undefined
          }
        }
        let keyType = 'x509'
        if (kind !== 'certificate') {
          const [kt] = p.C_GetAttributeValue(s, h, [{ type: P.CKA_KEY_TYPE }])
          const v = ulong(kt!.value)
          keyType = v === P.CKK_RSA ? 'rsa' : v === P.CKK_EC ? 'ec' : v === CKK_EC_EDWARDS ? 'ed25519' : v === P.CKK_AES ? 'aes' : 'generic-secret'
        }
        const secretish = kind === 'private' || kind === 'secret'
        return {
          label: label!.value.toString('utf8'),
          id: id!.value,
          kind,
          keyType,
          sensitive: secretish ? flag(P.CKA_SENSITIVE) : undefined,
          extractable: secretish ? flag(P.CKA_EXTRACTABLE) : undefined,
        }
      }),
    )
  }

  /** A public attribute of an object (a certificate's CKA_VALUE), with the same stale-handle handling as key use. */
  async attribute(label: string, kind: keyof typeof CLASS, type: number): Promise<Buffer> {
    return this.#withObject(label, kind, 'C_GetAttributeValue', (s, p, h) => p.C_GetAttributeValue(s, h, [{ type }])[0]!.value)
  }

  /** The object handle for `label`, from the cache or the token. For certs.ts and tests. */
  async handle(label: string, kind: keyof typeof CLASS): Promise<Handle> {
    const h = await this.#find(label, kind, true)
    return h!
  }

  /** An operation and its `Init`, whole, on a token thread (Token.runWhole), with the same stale-handle handling. */
  #whole(label: string, kind: keyof typeof CLASS, op: string, what: OffThreadJob['op'], mechanism: OffThreadJob['mechanism'], input: Buffer, out: number) {
    return this.#withObject(label, kind, op, undefined, (h) => this.#token.runWhole(op, h, what, mechanism, input, out))
  }

  async #withObject<T>(
    label: string,
    kind: keyof typeof CLASS,
    op: string,
    fn: ((s: Handle, p: PKCS11, h: Handle) => T | Promise<T>) | undefined,
    whole?: (h: Handle) => Promise<T>,
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const h = this.#handles.get(`${kind}\0${label}`) ?? (await this.handle(label, kind))
      try {
        return await (whole ? whole(h) : this.#token.run(op, (s, p) => fn!(s, p, h)))
      } catch (err) {
        // A handle from before a token swap: look the object up again, once.
        if (attempt === 0 && err instanceof HsmError && err.code === 'EHSM_KEY_NOT_FOUND') {
          this.#handles.delete(`${kind}\0${label}`)
          continue
        }
        throw err
      }
    }
  }

  async #find(label: string, kind: keyof typeof CLASS, required: boolean, reconnected = false): Promise<Handle | undefined> {
    const key = `${kind}\0${label}`
    const cached = this.#handles.get(key)
    if (cached) return cached
    const found = await this.#token.run('C_FindObjects', (s, p) =>
      findAll(p, s, [
        { type: P.CKA_CLASS, value: CLASS[kind] },
        { type: P.CKA_LABEL, value: label },
      ]),
    )
    if (found.length === 0) {
      if (this.#seen.has(key) && !reconnected) {
        // A key this token had is gone: the token was removed or replaced
        // (SoftHSM shows a removed token as empty). Connect afresh and look again;
        // while the token stays away that fails as EHSM_UNAVAILABLE/TOKEN_NOT_FOUND,
        // which callers treat as temporary, not as a missing key.
        this.#token.invalidate(new HsmError('EHSM_UNAVAILABLE', `${kind} "${label}" disappeared from the token`))
        return this.#find(label, kind, required, true)
      }
      this.#seen.delete(key)
      if (required) throw new HsmError('EHSM_KEY_NOT_FOUND', `${kind} "${label}"`)
      return undefined
    }
    this.#seen.add(key)
    this.#handles.set(key, found[0]!)
    return found[0]
  }
}

export function findAll(p: PKCS11, s: Handle, template: { type: number; value?: unknown }[]): Handle[] {
  p.C_FindObjectsInit(s, template as never)
  try {
    const out: Handle[] = []
    for (;;) {
      const batch = p.C_FindObjects(s, 64)
      out.push(...batch)
      if (batch.length < 64) return out
    }
  } finally {
    p.C_FindObjectsFinal(s)
  }
}

/**
 * CKM_AES_GCM's parameters in the PKCS#11 2.40/3.0 layout (`CK_GCM_PARAMS` with `ulIvBits`) or the older draft one
 * without it, as pkcs11js builds them: the same cipher, told differently; modules read one, the other or both (#38).
 */
export type GcmLayout = 'pkcs11-2.40' | 'draft'
export const GCM_LAYOUTS: Record<GcmLayout, (iv: Buffer, aad: Buffer) => Record<string, unknown>> = {
  'pkcs11-2.40': (iv, aad) => ({ type: P.CK_PARAMS_AES_GCM_v240, iv, ivBits: 96, aad, tagBits: 128 }),
  draft: (iv, aad) => ({ type: P.CK_PARAMS_AES_GCM, iv, aad, tagBits: 128 }),
}

function gcm(layout: GcmLayout, iv: Buffer, aad: Buffer) {
  return { mechanism: P.CKM_AES_GCM, parameter: GCM_LAYOUTS[layout](iv, aad) } as never
}

function b64u(b: Buffer): string {
  return b.toString('base64url')
}

/** CKA_EC_POINT is a DER OCTET STRING holding the point. */
function unwrapOctetString(b: Buffer): Buffer {
  if (b[0] !== 0x04) return b
  const len = b[1]!
  if (len < 0x80) return b.subarray(2, 2 + len)
  const n = len & 0x7f
  return b.subarray(2 + n)
}

/** PKCS#11 ECDSA signatures are r||s; X.509 and CMS want SEQUENCE { INTEGER r, INTEGER s }. */
export function ecdsaRawToDer(raw: Buffer): Buffer {
  const half = raw.length / 2
  return der.sequence(der.integer(raw.subarray(0, half)), der.integer(raw.subarray(half)))
}
