import { constants, createCipheriv, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto'
import { HsmError, toHsmError } from './errors.ts'
import { pkcs11 as P, type Handle, type PKCS11 } from './pkcs11.ts'

type Template = Parameters<PKCS11['C_CreateObject']>[1]

/** PKCS#11 3.0's mechanisms not in pkcs11js's constant table. */
const CKM_AES_KEY_WRAP_PAD = 0x210a
const CKM_AES_KEY_WRAP_KWP = 0x210b

/**
 * How a private key is wrapped for the token, in order of preference, each used only when the token lists it for
 * unwrapping. CKM_AES_KEY_WRAP_PAD is RFC 5649 in SoftHSM and most modules, but NSS softokn reads it as RFC 3394
 * with PKCS#7 padding (CKR_WRAPPED_KEY_INVALID on RFC 5649 input, #38), so the unambiguous KWP of PKCS#11 3.0
 * comes first.
 */
const KEY_WRAPS: { mechanism: number; wrap: (key: Buffer, data: Buffer) => { data: Buffer; parameter?: Buffer } }[] = [
  { mechanism: CKM_AES_KEY_WRAP_KWP, wrap: kwp },
  { mechanism: CKM_AES_KEY_WRAP_PAD, wrap: kwp },
  {
    mechanism: P.CKM_AES_CBC_PAD,
    wrap: (key, data) => {
      const iv = randomBytes(16)
      const c = createCipheriv('aes-256-cbc', key, iv)
      return { data: Buffer.concat([c.update(data), c.final()]), parameter: iv }
    },
  },
]

/** RFC 5649 AES key wrap with padding (OpenSSL's id-aes256-wrap-pad, its alternative initial value). */
function kwp(key: Buffer, data: Buffer): { data: Buffer } {
  const c = createCipheriv('id-aes256-wrap-pad', key, Buffer.from('a65959a6', 'hex'))
  return { data: Buffer.concat([c.update(data), c.final()]) }
}

/** RSA-OAEP as the token unwraps with it: SHA-256 where it takes it, else SHA-1 (SoftHSM 2.6 knows only SHA-1 in OAEP). */
const OAEP = [
  { hash: 'sha256', hashAlg: P.CKM_SHA256, mgf: P.CKG_MGF1_SHA256 },
  { hash: 'sha1', hashAlg: P.CKM_SHA_1, mgf: P.CKG_MGF1_SHA1 },
] as const

/**
 * Keys brought into the token from outside — a PKCS#12's private key, the probe's AES keys of known value — go in
 * wrapped, never as plaintext attributes of C_CreateObject (#38, M6). A module in FIPS mode refuses a private or
 * secret value in C_CreateObject (softokn in FIPS mode: CKR_ATTRIBUTE_VALUE_INVALID; validated HSMs the same),
 * and wrapped, the key never crosses the PKCS#11 interface in the clear on any token.
 *
 * The token makes an RSA-2048 transport key pair (session objects, destroyed at the end); a secret value is
 * RSA-OAEP encrypted to its public half and unwrapped into `template`. A private key (PKCS#8) is wrapped with a
 * fresh AES-256 key brought in that way. Runs inside the caller's `token.run`, on its session.
 */
export class KeyImport {
  readonly #p: PKCS11
  readonly #s: Handle
  readonly #slot: Handle
  readonly #made: Handle[] = []
  #transport: { priv: Handle; pub: ReturnType<typeof createPublicKey> } | undefined

  constructor(p: PKCS11, session: Handle, slot: Handle) {
    this.#p = p
    this.#s = session
    this.#slot = slot
  }

  /** An AES (or generic) secret of known value, unwrapped into an object made from `template`. */
  async secret(value: Buffer, template: Template): Promise<Handle> {
    const t = await this.#transportKey()
    let last: unknown
    for (const o of OAEP) {
      const wrapped = publicEncrypt({ key: t.pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: o.hash }, value)
      const mechanism = { mechanism: P.CKM_RSA_PKCS_OAEP, parameter: { type: P.CK_PARAMS_RSA_OAEP, hashAlg: o.hashAlg, mgf: o.mgf, source: 1 } }
      try {
        return await this.#p.C_UnwrapKeyAsync(this.#s, mechanism, t.priv, wrapped, template)
      } catch (err) {
        last = err
      }
    }
    throw toHsmError(last, 'C_UnwrapKey (RSA-OAEP)')
  }

  /** A private key given as PKCS#8 DER, unwrapped into an object made from `template` (class, type, label, flags). */
  async privateKey(pkcs8: Buffer, template: Template): Promise<Handle> {
    const list = this.#p.C_GetMechanismList(this.#slot)
    const how = KEY_WRAPS.find((w) => list.includes(w.mechanism) && (this.#p.C_GetMechanismInfo(this.#slot, w.mechanism).flags & P.CKF_UNWRAP) !== 0)
    if (!how) throw new HsmError('EHSM_MECHANISM_UNSUPPORTED', 'the token unwraps private keys with none of CKM_AES_KEY_WRAP_KWP, _PAD or CKM_AES_CBC_PAD')
    const key = randomBytes(32)
    try {
      const aes = await this.secret(key, [
        { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
        { type: P.CKA_KEY_TYPE, value: P.CKK_AES },
        { type: P.CKA_TOKEN, value: false },
        { type: P.CKA_SENSITIVE, value: true },
        { type: P.CKA_EXTRACTABLE, value: false },
        { type: P.CKA_UNWRAP, value: true },
      ])
      this.#made.push(aes)
      const w = how.wrap(key, pkcs8)
      const mechanism = w.parameter ? { mechanism: how.mechanism, parameter: w.parameter } : { mechanism: how.mechanism }
      return await this.#p.C_UnwrapKeyAsync(this.#s, mechanism, aes, w.data, template)
    } finally {
      key.fill(0)
    }
  }

  /** Destroys the transport key pair and the AES keys made for the import. */
  close(): void {
    for (const h of this.#made.splice(0)) {
      try {
        this.#p.C_DestroyObject(this.#s, h)
      } catch {
        // a session object: gone with its session at the latest
      }
    }
    this.#transport = undefined
  }

  async #transportKey(): Promise<{ priv: Handle; pub: ReturnType<typeof createPublicKey> }> {
    if (this.#transport) return this.#transport
    const { publicKey, privateKey } = await this.#p.C_GenerateKeyPairAsync(
      this.#s,
      { mechanism: P.CKM_RSA_PKCS_KEY_PAIR_GEN },
      [
        { type: P.CKA_TOKEN, value: false },
        { type: P.CKA_MODULUS_BITS, value: 2048 },
        { type: P.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
        { type: P.CKA_WRAP, value: true },
      ],
      [
        { type: P.CKA_TOKEN, value: false },
        { type: P.CKA_PRIVATE, value: true },
        { type: P.CKA_SENSITIVE, value: true },
        { type: P.CKA_EXTRACTABLE, value: false },
        { type: P.CKA_UNWRAP, value: true },
      ],
    )
    this.#made.push(publicKey, privateKey)
    const [n, e] = this.#p.C_GetAttributeValue(this.#s, publicKey, [{ type: P.CKA_MODULUS }, { type: P.CKA_PUBLIC_EXPONENT }])
    const pub = createPublicKey({ key: { kty: 'RSA', n: n!.value.toString('base64url'), e: e!.value.toString('base64url') }, format: 'jwk' })
    return (this.#transport = { priv: privateKey, pub })
  }
}
