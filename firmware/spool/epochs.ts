import type { Clock } from '../../hal/clock.ts'
import { HsmError, type Hsm } from '../../hal/hsm/index.ts'
import { GatewayError } from '../errors.ts'
import type { EventSink } from '../events.ts'
import { epochKeyLabel, epochOfLabel } from '../keys/labels.ts'
import type { Logger } from '../log.ts'

/**
 * Spool epochs and their keys (M10, S9). Every `spool.epochSeconds` a new
 * epoch begins with a fresh AES-256 key in the HSM, which wraps the data keys
 * of the mail spooled in it. Once an epoch has ended and its last mail is
 * final, its key is destroyed: nothing left of that epoch (a record on a
 * failed disk, a backup) can be decrypted by anyone any more — crypto-shredding.
 */
export class EpochKeys {
  readonly #hsm: Hsm
  readonly #events: EventSink
  readonly #log: Logger
  readonly #clock: Clock
  readonly #epochMs: number
  /** Live mails per epoch. */
  readonly #counts = new Map<string, number>()
  readonly #known = new Set<string>()
  readonly #creating = new Map<string, Promise<void>>()

  constructor(deps: { hsm: Hsm; events: EventSink; log: Logger; clock: Clock; epochSeconds: number }) {
    this.#hsm = deps.hsm
    this.#events = deps.events
    this.#log = deps.log
    this.#clock = deps.clock
    this.#epochMs = deps.epochSeconds * 1000
  }

  /** A mail's data key wrapped under its epoch's key (made first for a new epoch); the HSM away is EHSM_UNAVAILABLE. */
  async wrap(epoch: string, dataKey: Buffer, id: string): Promise<{ iv: Buffer; ciphertext: Buffer }> {
    try {
      await this.ensure(epoch)
      return await this.#hsm.keys.encrypt(epochKeyLabel(epoch), dataKey, Buffer.from(id))
    } catch (err) {
      if (err instanceof HsmError) throw new GatewayError('EHSM_UNAVAILABLE', undefined, { cause: err })
      throw err
    }
  }

  /** A record's data key, unwrapped in the HSM under its epoch's key. */
  unwrap(epoch: string, iv: Buffer, ciphertext: Buffer, id: string): Promise<Buffer> {
    return this.#hsm.keys.decrypt(epochKeyLabel(epoch), iv, ciphertext, Buffer.from(id))
  }

  /** How many epochs hold live mail. */
  get live(): number {
    return this.#counts.size
  }

  /** The epoch a mail created at `t` belongs to. */
  at(t: number): string {
    return Math.floor(t / this.#epochMs).toString(36)
  }

  /** Counts a live mail in its epoch (at accept, and for each record found at start). */
  hold(epoch: string): void {
    this.#counts.set(epoch, (this.#counts.get(epoch) ?? 0) + 1)
  }

  /** A mail of this epoch is final or quarantined; the epoch's key goes if it was the last of an ended epoch. */
  async release(epoch: string): Promise<void> {
    const n = (this.#counts.get(epoch) ?? 1) - 1
    if (n > 0) return void this.#counts.set(epoch, n)
    this.#counts.delete(epoch)
    if (epoch !== this.at(this.#clock.now())) await this.#destroy(epoch)
  }

  /** One creation per epoch: the first submissions of a new epoch arrive together and must not race to create its key. */
  ensure(epoch: string): Promise<void> {
    if (this.#known.has(epoch)) return Promise.resolve()
    let pending = this.#creating.get(epoch)
    if (!pending) {
      pending = (async () => {
        if (await this.#hsm.keys.ensureSecretKey(epochKeyLabel(epoch), 'aes-256')) this.#events.emit({ type: 'spool.epoch_key_created', epoch })
        this.#known.add(epoch)
      })().finally(() => this.#creating.delete(epoch))
      this.#creating.set(epoch, pending)
    }
    return pending
  }

  /** Destroys the keys of epochs that have ended and hold no live message (also ones left from before a restart). */
  async shredEnded(): Promise<void> {
    const current = this.at(this.#clock.now())
    let epochs: string[]
    try {
      epochs = (await this.#hsm.keys.list()).filter((k) => k.kind === 'secret').flatMap((k) => epochOfLabel(k.label) ?? [])
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'cannot list epoch keys (HSM unavailable); will retry')
      return
    }
    for (const epoch of epochs) if (epoch !== current && !this.#counts.has(epoch)) await this.#destroy(epoch)
  }

  async #destroy(epoch: string): Promise<void> {
    try {
      const n = await this.#hsm.keys.destroy(epochKeyLabel(epoch))
      this.#known.delete(epoch)
      if (n > 0) {
        this.#events.emit({ type: 'spool.epoch_key_destroyed', epoch })
        this.#log.info({ epoch }, 'epoch key destroyed: its records can no longer be decrypted by anyone')
      }
    } catch (err) {
      // Retried by the periodic check; the key stays until it can be destroyed.
      this.#log.warn({ epoch, err: (err as Error).message }, 'epoch key not destroyed yet')
    }
  }
}
