import type { Hsm } from '../../hal/hsm/index.ts'

export interface KeyPair {
  enc: Buffer
  mac: Buffer
}

/**
 * An encryption key and a MAC key derived in the HSM (HMAC under `label`, which
 * never leaves it, over `<context> encryption` and `<context> authentication`),
 * derived once and kept; derived again after a failure (the HSM was away).
 * The tracking tokens and the return-path tokens use one each.
 */
export class DerivedKeys {
  readonly #hsm: Hsm
  readonly #label: string
  readonly #context: string
  #keys: Promise<KeyPair> | undefined
  #loaded: KeyPair | undefined

  constructor(hsm: Hsm, label: string, context: string) {
    this.#hsm = hsm
    this.#label = label
    this.#context = context
  }

  keys(): Promise<KeyPair> {
    this.#keys ??= Promise.all([
      this.#hsm.keys.hmac(this.#label, Buffer.from(`${this.#context} encryption`)),
      this.#hsm.keys.hmac(this.#label, Buffer.from(`${this.#context} authentication`)),
    ]).then(
      ([enc, mac]) => (this.#loaded = { enc, mac }),
      (err: unknown) => {
        this.#keys = undefined
        throw err
      },
    )
    return this.#keys
  }

  /** The keys once keys() has resolved, else undefined. */
  get loaded(): KeyPair | undefined {
    return this.#loaded
  }
}
