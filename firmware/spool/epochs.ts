import { hkdfSync, randomBytes } from 'node:crypto'
import type { Clock } from '../../hal/clock.ts'
import { HsmError, type Hsm } from '../../hal/hsm/index.ts'
import { GatewayError } from '../errors.ts'
import type { EventSink } from '../events.ts'
import { epochKeyLabel, epochOfLabel } from '../keys/labels.ts'
import type { Logger } from '../log.ts'
import type { DerivedKeyRef, RecordHeader } from './record.ts'

/** The additional data an epoch's data key is wrapped with: it unwraps for that epoch only. */
const epochAad = (epoch: string) => Buffer.from(`statement-gateway spool epoch data key ${epoch}`)

/** A record's data key: HKDF-SHA256 of its epoch's data key, with its own salt, bound to its id. */
function derive(epochKey: Buffer, salt: Buffer, id: string): Buffer {
  return Buffer.from(hkdfSync('sha256', epochKey, salt, `statement-gateway spool record ${id}`, 32))
}

/**
 * Spool epochs and their keys (M10, S9). Every `spool.epochSeconds` a new
 * epoch begins with a fresh AES-256 key in the HSM. It wraps the epoch's data
 * key, which this process makes at the epoch's first mail and from which each
 * record's own key is derived (#35; records of version 1 have their own data
 * key wrapped instead). Once an epoch has ended and its last mail is final,
 * its HSM key is destroyed and its data key wiped from memory: nothing left of
 * that epoch (a record on a failed disk, a backup) can be decrypted by anyone
 * any more — crypto-shredding.
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
  /** #35: this process's data key of each epoch, made at its first mail. */
  readonly #made = new Map<string, Promise<{ key: Buffer; sealed: Omit<DerivedKeyRef, 'salt'> }>>()
  /** #35: epoch data keys in memory, by epoch and sealed form (each unwrapped once). Wiped when the epoch's HSM key goes. */
  readonly #keys = new Map<string, Map<string, Promise<Buffer>>>()

  constructor(deps: { hsm: Hsm; events: EventSink; log: Logger; clock: Clock; epochSeconds: number }) {
    this.#hsm = deps.hsm
    this.#events = deps.events
    this.#log = deps.log
    this.#clock = deps.clock
    this.#epochMs = deps.epochSeconds * 1000
  }

  /**
   * #35: a new record's data key, derived (HKDF-SHA256, a fresh salt, its id) from its epoch's data
   * key, and what its header keeps to derive it again. The epoch's data key is made in this process
   * and wrapped by the HSM's epoch key once per epoch and start; the HSM away is EHSM_UNAVAILABLE.
   */
  async newRecordKey(epoch: string, id: string): Promise<{ dataKey: Buffer; keyRef: DerivedKeyRef }> {
    const { key, sealed } = await this.#current(epoch)
    const salt = randomBytes(16)
    return { dataKey: derive(key, salt, id), keyRef: { ...sealed, salt: salt.toString('base64') } }
  }

  /** A record's data key from its header: derived (version 2, its epoch's key unwrapped once and kept) or unwrapped in the HSM (version 1). */
  async recordKey(header: RecordHeader): Promise<Buffer> {
    if ('wrapIv' in header) {
      this.unwraps++
      return this.#hsm.keys.decrypt(
        epochKeyLabel(header.epoch),
        Buffer.from(header.wrapIv, 'base64'),
        Buffer.from(header.wrapCt, 'base64'),
        Buffer.from(header.id),
      )
    }
    const known = this.#keys.get(header.epoch) ?? new Map<string, Promise<Buffer>>()
    this.#keys.set(header.epoch, known)
    let key = known.get(header.epochKeyCt)
    if (!key) {
      this.unwraps++
      key = this.#hsm.keys.decrypt(
        epochKeyLabel(header.epoch),
        Buffer.from(header.epochKeyIv, 'base64'),
        Buffer.from(header.epochKeyCt, 'base64'),
        epochAad(header.epoch),
      )
      known.set(header.epochKeyCt, key)
      // A failure (the HSM away, a record altered) is not kept: the next read asks again.
      void key.catch(() => known.get(header.epochKeyCt) === key && known.delete(header.epochKeyCt))
    }
    return derive(await key, Buffer.from(header.salt, 'base64'), header.id)
  }

  /** HSM unwraps of data keys since start (one per epoch and start for version 2 records; tests and status). */
  unwraps = 0
  /** HSM wraps of epoch data keys since start (one per epoch and start). */
  wraps = 0

  /** This process's data key for `epoch`, made and wrapped by the HSM once (also kept for reading its own records back). */
  #current(epoch: string): Promise<{ key: Buffer; sealed: Omit<DerivedKeyRef, 'salt'> }> {
    let made = this.#made.get(epoch)
    if (!made) {
      made = (async () => {
        await this.ensure(epoch)
        const key = randomBytes(32)
        try {
          const { iv, ciphertext } = await this.#hsm.keys.encrypt(epochKeyLabel(epoch), key, epochAad(epoch))
          this.wraps++
          const sealed = { epochKeyIv: iv.toString('base64'), epochKeyCt: ciphertext.toString('base64') }
          const known = this.#keys.get(epoch) ?? new Map<string, Promise<Buffer>>()
          known.set(sealed.epochKeyCt, Promise.resolve(key))
          this.#keys.set(epoch, known)
          return { key, sealed }
        } catch (err) {
          key.fill(0)
          if (err instanceof HsmError) throw new GatewayError(err.code === 'EHSM_BUSY' ? 'EHSM_BUSY' : 'EHSM_UNAVAILABLE', undefined, { cause: err })
          throw err
        }
      })()
      this.#made.set(epoch, made)
      // Not kept when it failed: the next mail tries again.
      void made.catch(() => this.#made.get(epoch) === made && this.#made.delete(epoch))
    }
    return made
  }

  /** Wipes and forgets every data key of an epoch held in memory (its HSM key is being destroyed). */
  #forget(epoch: string): void {
    for (const key of this.#keys.get(epoch)?.values() ?? [])
      void key.then(
        (k) => k.fill(0),
        () => undefined,
      )
    this.#keys.delete(epoch)
    this.#made.delete(epoch)
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
      this.#forget(epoch)
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
