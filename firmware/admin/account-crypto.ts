import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto'
import { hashPassword, verifyPassword } from '../../hal/crypto/password.ts'
import type { Hsm } from '../../hal/hsm/index.ts'
import { DerivedKeys } from '../keys/derived.ts'
import { PASSWORD_PEPPER_LABEL } from '../keys/labels.ts'

/**
 * What makes the accounts file inert without the HSM (S3, S4): passwords are
 * hashed with scrypt over an HMAC of them computed in the token
 * (`admin/password-pepper`, which never leaves it); TOTP secrets are sealed
 * with AES-256-GCM (the account name as associated data) and recovery codes
 * kept as HMACs, under keys derived in the token from the same key.
 */
export class AccountCrypto {
  readonly #hsm: Hsm
  readonly #keys: DerivedKeys
  /** scrypt work is done for an unknown name too, so timing does not tell names apart. */
  #decoy: Promise<string> | undefined

  constructor(hsm: Hsm) {
    this.#hsm = hsm
    this.#keys = new DerivedKeys(hsm, PASSWORD_PEPPER_LABEL, 'admin accounts')
  }

  /** The password as scrypt sees it: an HMAC of it computed in the HSM, so the hash cannot be attacked without the token. */
  async pepper(password: string): Promise<string> {
    const mac = await this.#hsm.keys.hmac(PASSWORD_PEPPER_LABEL, Buffer.from(`admin password\0${password.normalize('NFC')}`))
    return mac.toString('base64')
  }

  async hash(password: string): Promise<string> {
    return hashPassword(await this.pepper(password))
  }

  /** The work of checking a password, against a hash no one has: for a name that does not exist. */
  async decoyCheck(password: string): Promise<void> {
    this.#decoy ??= hashPassword(randomBytes(16).toString('base64'))
    await verifyPassword(await this.pepper(password), await this.#decoy)
  }

  async seal(secret: Buffer, name: string): Promise<string> {
    const { enc } = await this.#keys.keys()
    const iv = randomBytes(12)
    const c = createCipheriv('aes-256-gcm', enc, iv).setAAD(Buffer.from(name))
    const body = Buffer.concat([c.update(secret), c.final()])
    return Buffer.concat([iv, c.getAuthTag(), body]).toString('base64')
  }

  async unseal(sealed: string, name: string): Promise<Buffer> {
    const { enc } = await this.#keys.keys()
    const raw = Buffer.from(sealed, 'base64')
    const d = createDecipheriv('aes-256-gcm', enc, raw.subarray(0, 12)).setAAD(Buffer.from(name))
    d.setAuthTag(raw.subarray(12, 28))
    return Buffer.concat([d.update(raw.subarray(28)), d.final()])
  }

  async recoveryMac(code: string): Promise<string> {
    const { mac } = await this.#keys.keys()
    return createHmac('sha256', mac).update(`recovery\0${code}`).digest('base64')
  }
}
