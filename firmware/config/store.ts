import { deepFreeze, type Config } from './load.ts'
import { LIVE_KEYS } from './schema.ts'
import { canonicalJson } from './versions.ts'

export type LiveKey = (typeof LIVE_KEYS)[number]

/** What a resource owner does when keys it holds change: build the new resource, then switch; a throw refuses the change. */
export type OnChange = (next: Config, previous: Config) => void | Promise<void>

interface Subscriber {
  owner: string
  keys: readonly LiveKey[]
  fn: OnChange
}

/**
 * The one live configuration of a running box (S7). Components that only read
 * the configuration read `current` for each transaction, so an approved change
 * reaches them with nothing to call; a component that owns something built from
 * it (the inspection workers, the delivery routes and byte budget, the login
 * table) subscribes to the keys it holds with `on`.
 *
 * Only `LIVE_KEYS` change while the box runs: every other key of an approved
 * configuration waits for the next start, so `current` keeps the values the
 * listeners, the spool and the HSM were started with.
 */
export class ConfigStore {
  #current: Config
  readonly #subscribers: Subscriber[] = []
  readonly #readers: { owner: string; keys: readonly LiveKey[] }[] = []

  constructor(initial: Config) {
    this.#current = initial
  }

  get current(): Config {
    return this.#current
  }

  /** `owner` rebuilds what it holds when one of `keys` changes (in subscription order). */
  on(owner: string, keys: readonly LiveKey[], fn: OnChange): void {
    this.#subscribers.push({ owner, keys, fn })
  }

  /** `owner` reads `keys` from `current` for each transaction: nothing to tell it, but the store knows who depends on what. */
  reads(owner: string, keys: readonly LiveKey[]): void {
    this.#readers.push({ owner, keys })
  }

  /** Who holds or reads which live key (a test checks every `LIVE_KEYS` entry has one). */
  get subscriptions(): readonly { owner: string; keys: readonly LiveKey[]; holds: boolean }[] {
    return [...this.#subscribers.map(({ owner, keys }) => ({ owner, keys, holds: true })), ...this.#readers.map((r) => ({ ...r, holds: false }))]
  }

  /**
   * Puts the live keys of `next` in force: each subscriber whose keys changed is told, in
   * order; when one throws, those already told are told the old configuration again and
   * the error goes to the caller (the change is refused, `current` stays).
   */
  async set(next: Config): Promise<void> {
    const previous = this.#current
    const merged = withLiveKeys(previous, next)
    const told: Subscriber[] = []
    try {
      for (const s of this.#subscribers) {
        if (!s.keys.some((k) => canonicalJson(valueAt(merged, k)) !== canonicalJson(valueAt(previous, k)))) continue
        await s.fn(merged, previous)
        told.push(s)
      }
    } catch (err) {
      for (const s of told.reverse()) await Promise.resolve(s.fn(previous, merged)).catch(() => undefined)
      throw err
    }
    this.#current = merged
  }
}

/** The value at a dotted key (`delivery.timeouts`). */
export function valueAt(config: Config, key: string): unknown {
  let v: unknown = config
  for (const part of key.split('.')) v = (v as Record<string, unknown> | undefined)?.[part]
  return v
}

/** `base` with the values of `LIVE_KEYS` taken from `next`. */
export function withLiveKeys(base: Config, next: Config): Config {
  const out = structuredClone(base)
  for (const key of LIVE_KEYS) {
    const parts = key.split('.')
    let target = out as unknown as Record<string, unknown>
    for (const part of parts.slice(0, -1)) target = target[part] as Record<string, unknown>
    target[parts.at(-1)!] = structuredClone(valueAt(next, key))
  }
  return deepFreeze(out)
}
