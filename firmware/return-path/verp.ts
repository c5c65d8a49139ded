import { createCipheriv, createHmac, timingSafeEqual } from 'node:crypto'
import type { Hsm } from '../../hal/hsm/index.ts'
import { base32, unbase32 } from '../../hal/crypto/base32.ts'
import { DerivedKeys, type KeyPair } from '../keys/derived.ts'
import { RETURN_PATH_KEY_LABEL } from '../keys/labels.ts'
import { boxError } from '../box-errors.ts'

/**
 * Return-path tokens (M8, M11): the local part of the envelope sender a
 * statement goes out with (`b-<token>@bounce.bank.example`, VERP) and of the
 * address its read receipt is asked for (`r-<token>@…`). A token stands for
 * one queue id and one recipient index, so a report that comes back names its
 * statement and recipient without anything readable in it: the reference is
 * encrypted (AES-256-CTR) under an IV that is its own HMAC (a synthetic IV,
 * so one statement's token is the same on every retry), and the 80-bit tag
 * is checked before anything is believed. Keys are derived in the HSM from
 * `bounces/return-path`, which never leaves it.
 *
 * The token is base32 in lower case: local parts come back lower-cased from
 * some servers, and 36 characters stay far under the 64 a local part may have.
 */
export interface ReturnRef {
  /** `b`: a bounce address (the envelope sender); `r`: a read-receipt address. */
  kind: 'b' | 'r'
  id: string
  recipient: number
}

const TAG = 10

export class ReturnPathTokens {
  readonly #derived: DerivedKeys

  constructor(hsm: Hsm) {
    this.#derived = new DerivedKeys(hsm, RETURN_PATH_KEY_LABEL, 'statement-gateway return path v1')
  }

  /** Derives the keys (once; again after a failure, e.g. while the HSM was away). */
  keys(): Promise<KeyPair> {
    return this.#derived.keys()
  }

  /** The local part for `ref` (`b-…` or `r-…`); keys() must have resolved. */
  localPart(ref: ReturnRef): string {
    if (!this.#derived.loaded) throw boxError('EINTERNAL', 'return-path keys not derived yet: await keys() first')
    const { enc, mac } = this.#derived.loaded
    const id = Buffer.from(ref.id, 'base64url')
    if (id.toString('base64url') !== ref.id || id.length === 0 || id.length > 32) throw boxError('EINTERNAL', `not a queue id: ${ref.id}`)
    if (!Number.isInteger(ref.recipient) || ref.recipient < 0 || ref.recipient > 0xffff) throw boxError('EINTERNAL', `bad recipient index ${ref.recipient}`)
    const plain = Buffer.concat([Buffer.from(ref.kind), Buffer.of(ref.recipient >> 8, ref.recipient & 0xff), id])
    // S2: the tag (HMAC-SHA-256 under a key derived in the HSM) is what makes a forged token fail.
    const tag = createHmac('sha256', mac).update(plain).digest().subarray(0, TAG)
    const iv = Buffer.concat([tag, Buffer.alloc(16 - TAG)])
    const cipher = createCipheriv('aes-256-ctr', enc, iv)
    return `${ref.kind}-${base32(Buffer.concat([tag, cipher.update(plain.subarray(1)), cipher.final()]))}`
  }

  /**
   * The reference a local part stands for: `malformed` when it is not a
   * token at all, `forged` when its tag does not check.
   */
  async open(localPart: string): Promise<ReturnRef | 'malformed' | 'forged'> {
    const lp = localPart.toLowerCase()
    const kind = lp[0]
    if ((kind !== 'b' && kind !== 'r') || lp[1] !== '-' || lp.length < 20 || lp.length > 64) return 'malformed'
    const raw = unbase32(lp.slice(2))
    if (!raw || raw.length < TAG + 3) return 'malformed'
    const { enc, mac } = await this.keys()
    const tag = raw.subarray(0, TAG)
    const iv = Buffer.concat([tag, Buffer.alloc(16 - TAG)])
    const decipher = createCipheriv('aes-256-ctr', enc, iv)
    const body = Buffer.concat([decipher.update(raw.subarray(TAG)), decipher.final()])
    const plain = Buffer.concat([Buffer.from(kind), body])
    const expected = createHmac('sha256', mac).update(plain).digest().subarray(0, TAG)
    if (!timingSafeEqual(tag, expected)) return 'forged'
    return { kind, recipient: (body[0]! << 8) | body[1]!, id: body.subarray(2).toString('base64url') }
  }
}
