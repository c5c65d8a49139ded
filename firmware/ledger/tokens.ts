import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Hsm } from '../../hal/hsm/index.ts'
import { DerivedKeys, type KeyPair } from '../keys/derived.ts'
import { TRACKING_KEY_LABEL } from '../keys/labels.ts'
import { boxError } from '../box-errors.ts'

/**
 * What a tracking token stands for: an open (the image), a click on link `link`, or the
 * confirmation link of a read-receipt class (M11) — of one recipient's statement.
 */
export interface TrackingRef {
  kind: 'open' | 'click' | 'confirm'
  /** Queue id of the mail. */
  id: string
  /** Recipient index in the mail (0: tracking is only done for mails to one recipient). */
  recipient: number
  /** Link index in the mail, in document order (clicks only). */
  link?: number
  /** Where a click goes: the link as the firm wrote it (clicks only). */
  url?: string
}

const VERSION = 1
const IV = 16
const TAG = 16
/** Longest token accepted (a link up to ~1.5 KB); anything longer is refused before any crypto. */
export const MAX_TOKEN = 2200

/**
 * Open and click tokens (M9): the reference (queue id, recipient index, link
 * index and the link itself) encrypted with AES-256-CTR and authenticated with
 * HMAC-SHA256 (encrypt-then-MAC, 128-bit tag), base64url. Nothing in a token
 * is readable — no address, no statement id, not even the queue id — and none
 * can be made or altered without the keys, which are derived in the HSM from
 * `reports/tracking` (that key never leaves it). The listener redirects only
 * to the link sealed in the token, so there is no open redirect to abuse.
 */
export class TrackingTokens {
  readonly #derived: DerivedKeys

  constructor(hsm: Hsm) {
    this.#derived = new DerivedKeys(hsm, TRACKING_KEY_LABEL, 'statement-gateway tracking v1')
  }

  /** Derives the keys (once; again after a failure, e.g. while the HSM was away). */
  keys(): Promise<KeyPair> {
    return this.#derived.keys()
  }

  async seal(ref: TrackingRef): Promise<string> {
    await this.keys()
    return this.sealNow(ref)
  }

  /** Seals without waiting, once keys() has resolved (a rewrite seals every link of a mail in one pass). */
  sealNow(ref: TrackingRef): string {
    if (!this.#derived.loaded) throw boxError('EINTERNAL', 'tracking keys not derived yet: await keys() first')
    const { enc, mac } = this.#derived.loaded
    const plain = Buffer.from(
      JSON.stringify(
        ref.kind === 'open'
          ? ['o', ref.id, ref.recipient]
          : ref.kind === 'confirm'
            ? ['r', ref.id, ref.recipient]
            : ['c', ref.id, ref.recipient, ref.link ?? 0, ref.url ?? ''],
      ),
    )
    const iv = randomBytes(IV)
    const cipher = createCipheriv('aes-256-ctr', enc, iv)
    const body = Buffer.concat([Buffer.of(VERSION), iv, cipher.update(plain), cipher.final()])
    // S2: encrypt-then-MAC; a tracking token nobody with the HSM-derived key made does not verify.
    const tag = createHmac('sha256', mac).update(body).digest().subarray(0, TAG)
    return Buffer.concat([body, tag]).toString('base64url')
  }

  /**
   * The reference a token stands for: `malformed` when it is not a token at
   * all, `forged` when its tag does not check (made or altered without the key).
   */
  async open(token: string): Promise<TrackingRef | 'malformed' | 'forged'> {
    if (token.length < 40 || token.length > MAX_TOKEN) return 'malformed'
    for (let i = 0; i < token.length; i++) {
      const c = token.charCodeAt(i)
      const ok = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f
      if (!ok) return 'malformed'
    }
    const raw = Buffer.from(token, 'base64url')
    if (raw.length < 1 + IV + TAG + 2 || raw[0] !== VERSION) return 'malformed'
    const { enc, mac } = await this.keys()
    const body = raw.subarray(0, raw.length - TAG)
    const tag = raw.subarray(raw.length - TAG)
    const expected = createHmac('sha256', mac).update(body).digest().subarray(0, TAG)
    if (!timingSafeEqual(tag, expected)) return 'forged'
    const decipher = createDecipheriv('aes-256-ctr', enc, body.subarray(1, 1 + IV))
    const plain = Buffer.concat([decipher.update(body.subarray(1 + IV)), decipher.final()])
    const v = JSON.parse(plain.toString()) as [string, string, number, number?, string?]
    if (v[0] === 'o') return { kind: 'open', id: v[1], recipient: v[2] }
    if (v[0] === 'r') return { kind: 'confirm', id: v[1], recipient: v[2] }
    return { kind: 'click', id: v[1], recipient: v[2], link: v[3], url: v[4] }
  }
}
