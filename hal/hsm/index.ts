import { join } from 'node:path'
import type { Clock } from '../clock.ts'
import { CertStore } from './certs.ts'
import { HsmError } from './errors.ts'
import { KeyStore, type KeyPairType, type SecretKeyType } from './keys.ts'
import { ensureDevToken, SOFTHSM_MODULE } from './softhsm.ts'
import { Token, type TokenOptions, type TokenState } from './token.ts'

export { HsmError, toHsmError, HSM_ERRORS, type HsmErrorCode } from './errors.ts'
export type { KeyPairType, SecretKeyType, SignAlgorithm, KeyInfo } from './keys.ts'
export { KeyStore } from './keys.ts'
export { CertStore, chainLabel } from './certs.ts'
export { Token, readPinFile } from './token.ts'
export { ensureDevToken, SOFTHSM_MODULE } from './softhsm.ts'

export interface HsmOptions {
  /** PKCS#11 module path; empty selects the embedded SoftHSM2 token under `devDir`. */
  module: string
  /** #38: what the module reads at C_Initialize (NSS softokn's configdir); empty or absent for most. */
  moduleParameters?: string
  tokenLabel: string
  /** PIN file; empty with the embedded token means `<devDir>/user.pin`. */
  pinFile: string
  sessions: number
  reconnectIntervalMs: number
  /** Where the embedded SoftHSM2 token lives (`<dataDir>/hsm`). */
  devDir: string
  clock: Clock
  /** Refuse calls that may wait inside the module on the main thread (TokenOptions.strict); default: $SG_PKCS11_STRICT is 1. */
  strict?: boolean
  /** Test only (#38, TokenOptions.quirks): a wrapper that reproduces a vendor module's behaviour. */
  quirks?: TokenOptions['quirks']
  threadQuirks?: TokenOptions['threadQuirks']
}

/** A key the box needs, created at start if missing. */
export interface RequiredKey {
  label: string
  type: KeyPairType | SecretKeyType
  purpose: string
}

export interface HsmStatus {
  state: TokenState
  error: string | undefined
  token: { label: string; manufacturer: string; model: string; serial: string } | undefined
  keys: { label: string; purpose: string; present: boolean }[]
  certificates: { label: string; subject: string; serial: string; notAfter: string; daysLeft: number }[]
}

/**
 * The box's HSM (M6): a token, the keys in it and the certificates beside
 * them. With no module configured it is a SoftHSM2 token in the data
 * directory, created on first use; otherwise the vendor's module. The code
 * path after that is the same PKCS#11 either way.
 *
 * One Hsm per process: a PKCS#11 module is initialised once per process
 * (and SoftHSM reads its configuration then), so two open Hsm objects would
 * share, and finalise, the same module.
 */
export class Hsm {
  readonly token: Token
  readonly keys: KeyStore
  readonly certs: CertStore
  readonly embedded: boolean
  readonly #opts: HsmOptions
  #createdToken = false

  constructor(opts: HsmOptions) {
    this.#opts = opts
    this.embedded = opts.module === ''
    // The embedded token's paths are fixed by ensureDevToken (called in open()).
    this.token = new Token({
      module: this.embedded ? SOFTHSM_MODULE : opts.module,
      label: opts.tokenLabel,
      ...(!this.embedded && opts.moduleParameters ? { libraryParameters: opts.moduleParameters } : {}),
      pinFile: this.embedded ? opts.pinFile || join(opts.devDir, 'user.pin') : opts.pinFile,
      sessions: opts.sessions,
      reconnectIntervalMs: opts.reconnectIntervalMs,
      ...(this.embedded ? { env: { SOFTHSM2_CONF: join(opts.devDir, 'softhsm2.conf') } } : {}),
      clock: opts.clock,
      strict: opts.strict ?? process.env.SG_PKCS11_STRICT === '1',
      quirks: opts.quirks,
      threadQuirks: opts.threadQuirks,
    })
    this.keys = new KeyStore(this.token)
    this.certs = new CertStore(this.token, this.keys)
  }

  /** True when open() had to create the embedded token. */
  get createdToken(): boolean {
    return this.#createdToken
  }

  async open(): Promise<void> {
    if (this.embedded) this.#createdToken = ensureDevToken(this.#opts.devDir, this.#opts.tokenLabel).created
    else if (!this.#opts.pinFile) throw new HsmError('EHSM_PIN_FILE', 'hsm.pinFile must be set when hsm.module is')
    await this.token.open()
  }

  async close(): Promise<void> {
    await this.token.close()
  }

  /** Creates the keys in `required` that are missing; returns the labels created. */
  async ensureKeys(required: readonly RequiredKey[]): Promise<string[]> {
    const created: string[] = []
    for (const k of required) {
      const made =
        k.type === 'aes-256' || k.type === 'hmac-sha256'
          ? await this.keys.ensureSecretKey(k.label, k.type)
          : (await this.keys.ensureKeyPair(k.label, k.type)).created
      if (made) created.push(k.label)
    }
    return created
  }

  /** For the admin page and metrics: token present and logged in, keys present, certificate expiry. */
  async status(required: readonly RequiredKey[], certificateLabels: readonly string[] = [], now = this.#opts.clock.now()): Promise<HsmStatus> {
    try {
      const token = await this.token.info()
      const keys = []
      for (const k of required) {
        const kind = k.type === 'aes-256' || k.type === 'hmac-sha256' ? 'secret' : 'private'
        keys.push({ label: k.label, purpose: k.purpose, present: await this.keys.exists(k.label, kind) })
      }
      const certificates = []
      for (const label of certificateLabels) {
        const [leaf] = await this.certs.chain(label).catch(() => [])
        if (!leaf) continue
        const notAfter = new Date(leaf.validTo)
        certificates.push({
          label,
          subject: leaf.subject,
          serial: leaf.serialNumber,
          notAfter: notAfter.toISOString(),
          daysLeft: Math.floor((notAfter.getTime() - now) / 86_400_000),
        })
      }
      return { state: this.token.state, error: undefined, token, keys, certificates }
    } catch (err) {
      // #33: the probe is the token's answer now; a failed one means the token is not usable, whatever an
      // earlier call found. The connection is dropped (state unavailable, told at once) and made again when it answers.
      if (err instanceof HsmError && this.token.state === 'connected') this.token.invalidate(err)
      return {
        state: this.token.state === 'connected' ? 'unavailable' : this.token.state,
        error: err instanceof Error ? err.message : String(err),
        token: undefined,
        keys: required.map((k) => ({ label: k.label, purpose: k.purpose, present: false })),
        certificates: [],
      }
    }
  }
}
