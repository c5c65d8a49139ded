import type { Hsm } from '../../hal/hsm/index.ts'
import { withMaskedText, type BoxEvent } from '../events.ts'
import { RECIPIENT_HMAC_LABEL } from '../keys/labels.ts'
import { maskAddress, type Logger } from '../log.ts'
import { SECRET_FIELDS } from '../secrets.ts'

const HMAC_CACHE_LIMIT = 100_000
const SECRETS = new Set<string>(SECRET_FIELDS)

/** A recipient as the trail keeps it (S6): keyed hash for proof, masked form for people. */
export interface RecipientRef {
  /** HMAC-SHA256 (hex) of the lower-cased address under the HSM key `audit/recipient-hmac`; null if the HSM was unavailable. */
  h: string | null
  m: string
}

/** HMAC of a recipient address as the trail stores it; the firm recomputes it to prove a delivery. */
export async function recipientHash(hsm: Hsm, address: string): Promise<string> {
  return (await hsm.keys.hmac(RECIPIENT_HMAC_LABEL, Buffer.from(address.trim().toLowerCase()))).toString('hex')
}

/**
 * What an event becomes before it is a record (S6): recipients replaced by
 * HMAC + masked form, addresses in replies and reasons masked, secrets in
 * config snapshots removed. Nothing clear about a customer reaches the trail.
 */
export class Redactor {
  readonly #hsm: Hsm
  readonly #log: Logger
  readonly #cache = new Map<string, string>()

  constructor(hsm: Hsm, log: Logger) {
    this.#hsm = hsm
    this.#log = log
  }

  async fields(original: BoxEvent): Promise<Record<string, unknown>> {
    const event = withMaskedText(original)
    if ('recipients' in event) {
      const { recipients, ...rest } = event
      return { ...rest, recipients: await Promise.all(recipients.map((r) => this.#recipient(r))) }
    }
    if (event.type === 'config.changed') return { ...event, before: withoutSecrets(event.before), after: withoutSecrets(event.after) }
    return { ...event }
  }

  async #recipient(address: string): Promise<RecipientRef> {
    const key = address.trim().toLowerCase()
    let h = this.#cache.get(key)
    if (h === undefined) {
      try {
        h = await recipientHash(this.#hsm, key)
        if (this.#cache.size >= HMAC_CACHE_LIMIT) this.#cache.clear()
        this.#cache.set(key, h)
      } catch (err) {
        // Never the clear address instead: the record keeps the masked form only.
        this.#log.error({ err: (err as Error).message }, 'recipient HMAC unavailable (HSM); recording the masked address only')
        return { h: null, m: maskAddress(key) }
      }
    }
    return { h, m: maskAddress(key) }
  }
}

function withoutSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutSecrets)
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, SECRETS.has(k) ? '[redacted]' : withoutSecrets(v)]))
  }
  return value
}
