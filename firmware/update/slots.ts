import { randomBytes, type KeyObject } from 'node:crypto'
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'
import { writeFileAtomic } from '../../hal/storage/files.ts'
import { createError } from '../box-errors.ts'
import { BundleError, compareVersions, extractBundle, keyId, openBundle, trustedKeys, type Manifest } from './bundle.ts'

/**
 * A/B slots for the firmware (ETSI EN 303 645 5.3; the shape of RAUC and
 * SWUpdate): `<root>/slots/a` and `<root>/slots/b`, `<root>/current` a link to
 * the one that runs, switched by an atomic rename, and `<root>/state.json`.
 * A new version goes into the other slot and runs in *trial*; the daemon
 * commits it when it is healthy, which raises the stored minimum security
 * version (never before: a rollback must stay possible). If it does not come
 * up healthy, or starts and fails `MAX_ATTEMPTS` times, the previous slot comes
 * back by itself. A crash at any moment leaves `current` on a whole slot: the
 * new one is only linked once every byte of it is written and checked.
 */
export type Slot = 'a' | 'b'
export const MAX_ATTEMPTS = 3

export interface SlotState {
  /** Versions committed in each slot. */
  slots: Partial<Record<Slot, { version: string; securityVersion: number }>>
  /** The lowest security version this box accepts (raised at commit only). */
  minSecurityVersion: number
  /** Vendor public keys (SPKI PEM) trusted for bundles. */
  trustedKeys: string[]
  trial?: { slot: Slot; from: Slot; version: string; securityVersion: number; startedAt: string; attempts: number; configVersionAtStart?: number }
  lastUpdate?: { version: string; outcome: 'committed' | 'rolled back' | 'refused' | 'installed'; reason: string; at: string }
  /** Steps not yet in the audit trail: the daemon records them (`firmware.update`) and clears the list. */
  events?: UpdateStep[]
}

export interface UpdateStep {
  step: 'verified' | 'installed' | 'trial' | 'committed' | 'rolled back' | 'refused'
  version: string
  outcome: 'ok' | 'failed'
  detail: string
  at: string
}

export class UpdateError extends createError('EUPDATE_REFUSED', 'UpdateError') {}

const other = (s: Slot): Slot => (s === 'a' ? 'b' : 'a')

export class Slots {
  readonly root: string
  readonly #now: () => number

  constructor(root: string, now: () => number = Date.now) {
    this.root = root
    this.#now = now
  }

  get statePath(): string {
    return join(this.root, 'state.json')
  }

  state(): SlotState {
    if (!existsSync(this.statePath)) throw new UpdateError(`${this.root} has no slot state: install the first version with "image init"`)
    return JSON.parse(readFileSync(this.statePath, 'utf8')) as SlotState
  }

  #save(s: SlotState, ...steps: Omit<UpdateStep, 'at'>[]): void {
    const at = this.#iso()
    const events = [...(s.events ?? []), ...steps.map((x) => ({ ...x, at }))].slice(-200)
    writeFileAtomic(this.statePath, `${JSON.stringify({ ...s, ...(events.length ? { events } : {}) }, null, 1)}\n`, 0o644)
  }

  /** The steps the trail has not got yet, taken (the caller records them). */
  takeEvents(): UpdateStep[] {
    if (!existsSync(this.statePath)) return []
    const s = this.state()
    if (!s.events?.length) return []
    writeFileAtomic(this.statePath, `${JSON.stringify({ ...s, events: undefined }, null, 1)}\n`, 0o644)
    return s.events
  }

  /** The manifest of the version in a slot (kept beside it at install). */
  manifestOf(slot: Slot): Manifest | undefined {
    const p = join(this.root, 'slots', `${slot}.manifest.json`)
    return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as Manifest) : undefined
  }

  /** The slot `current` links to. */
  current(): Slot {
    const target = readlinkSync(join(this.root, 'current'))
    const slot = target.split('/').at(-1)
    if (slot !== 'a' && slot !== 'b') throw new UpdateError(`current links to ${target}, not a slot`)
    return slot
  }

  slotDir(s: Slot): string {
    return join(this.root, 'slots', s)
  }

  /** `current` to `slot`, atomically: a new link renamed over the old one. */
  #link(slot: Slot): void {
    const tmp = join(this.root, `.current-${randomBytes(4).toString('hex')}`)
    symlinkSync(join('slots', slot), tmp)
    renameSync(tmp, join(this.root, 'current'))
  }

  /**
   * #31: what an install killed half way left behind (`.staging-*`, up to a whole slot's size each):
   * removed at the next install and before each start. Returns how many.
   */
  cleanStaging(): number {
    let n = 0
    const dir = join(this.root, 'slots')
    for (const name of existsSync(dir) ? readdirSync(dir) : [])
      if (name.startsWith('.staging-')) {
        rmSync(join(dir, name), { recursive: true, force: true })
        n++
      }
    return n
  }

  /** Verifies and writes a bundle into `slot`'s place (a fresh directory renamed in); nothing else changes. */
  #unpack(file: string, slot: Slot, keys: readonly KeyObject[], check: (m: Manifest) => void): Manifest {
    let fd: number
    try {
      fd = openSync(file, 'r')
    } catch (err) {
      throw new BundleError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`)
    }
    this.cleanStaging()
    const staging = join(this.root, 'slots', `.staging-${randomBytes(4).toString('hex')}`)
    try {
      const b = openBundle(fd, fstatSync(fd).size, keys)
      try {
        check(b.manifest)
      } catch (err) {
        // The refusal names the version the signed manifest says (#31: it was recorded as "?").
        if (err instanceof BundleError) err.version = b.manifest.version
        throw err
      }
      mkdirSync(join(this.root, 'slots'), { recursive: true })
      extractBundle(fd, b, staging)
      rmSync(this.slotDir(slot), { recursive: true, force: true })
      writeFileAtomic(join(this.root, 'slots', `${slot}.manifest.json`), JSON.stringify(b.manifest), 0o644)
      renameSync(staging, this.slotDir(slot))
      return b.manifest
    } catch (err) {
      rmSync(staging, { recursive: true, force: true })
      throw err
    } finally {
      closeSync(fd)
    }
  }

  /** The first version on a new box: slot a, committed, with the vendor keys it trusts. */
  init(file: string, vendorKeys: readonly string[]): Manifest {
    if (existsSync(this.statePath)) throw new UpdateError(`${this.root} is initialised already`)
    const m = this.#unpack(file, 'a', trustedKeys(vendorKeys), () => undefined)
    this.#link('a')
    this.#save({
      slots: { a: { version: m.version, securityVersion: m.securityVersion } },
      minSecurityVersion: m.securityVersion,
      trustedKeys: [...vendorKeys],
    })
    return m
  }

  /**
   * Checks and installs a bundle into the slot that is not running, then points
   * `current` at it in trial. Refusals change nothing on disk and say why.
   */
  install(file: string, configVersion?: number, opts: { allowDowngrade?: boolean } = {}): Manifest {
    const s = this.state()
    if (s.trial) throw new UpdateError(`version ${s.trial.version} is still on trial: wait for its commit or rollback`)
    const from = this.current()
    const running = s.slots[from]
    const m = this.#unpack(file, other(from), trustedKeys(s.trustedKeys), (m) => {
      if (m.securityVersion < s.minSecurityVersion)
        throw new BundleError(`security version ${m.securityVersion} is below this box's minimum ${s.minSecurityVersion}: a downgrade to a vulnerable version`)
      // #31: a lower version, or the running one again (a replay of its bundle), only as an explicit downgrade.
      if (running && !opts.allowDowngrade && compareVersions(m.version, running.version) <= 0)
        throw new BundleError(
          `version ${m.version} is ${
            compareVersions(m.version, running.version) === 0 ? 'the version this box runs' : `lower than the ${running.version} this box runs`
          }: ` + 'a downgrade is installed only when asked for explicitly (--allow-downgrade; on the admin page, a downgrade a second administrator approves)',
        )
      if (running && compareVersions(running.version, m.minUpgradeFrom) < 0)
        throw new BundleError(`version ${m.version} upgrades from ${m.minUpgradeFrom} or later; this box runs ${running.version}`)
    })
    const to = other(from)
    this.#save(
      {
        ...s,
        // The slot holds the new version from here on, on trial or not (#31: the state said the one it replaced).
        slots: { ...s.slots, [to]: { version: m.version, securityVersion: m.securityVersion } },
        trial: {
          slot: to,
          from,
          version: m.version,
          securityVersion: m.securityVersion,
          startedAt: this.#iso(),
          attempts: 0,
          ...(configVersion !== undefined ? { configVersionAtStart: configVersion } : {}),
        },
        lastUpdate: { version: m.version, outcome: 'installed', reason: 'on trial until it runs healthy', at: this.#iso() },
      },
      { step: 'verified', version: m.version, outcome: 'ok', detail: `signature, manifest and ${m.files.length} files` },
      { step: 'installed', version: m.version, outcome: 'ok', detail: `slot ${to}` },
      { step: 'trial', version: m.version, outcome: 'ok', detail: `slot ${to} runs on trial; slot ${from} stays for a rollback` },
    )
    this.#link(to)
    return m
  }

  /**
   * Before each start (the unit's ExecStartPre): a trial that has started and
   * failed `MAX_ATTEMPTS` times goes back to the previous slot. Also mends a crash
   * between the state and the link: a trial whose slot is not linked never began.
   */
  boot(): { rolledBack?: string; cleaned?: number } {
    const cleaned = this.cleanStaging()
    const s = this.state()
    if (!s.trial) return cleaned ? { cleaned } : {}
    if (this.current() !== s.trial.slot) {
      this.#save(
        { ...s, trial: undefined, lastUpdate: { version: s.trial.version, outcome: 'rolled back', reason: 'the install was interrupted', at: this.#iso() } },
        { step: 'rolled back', version: s.trial.version, outcome: 'failed', detail: 'the install was interrupted before the switch' },
      )
      return { rolledBack: 'the install was interrupted' }
    }
    if (s.trial.attempts >= MAX_ATTEMPTS) return { rolledBack: this.rollback(`it failed to start healthy ${s.trial.attempts} times`) }
    this.#save({ ...s, trial: { ...s.trial, attempts: s.trial.attempts + 1 } })
    return {}
  }

  /** The running trial is healthy: committed, and the minimum security version and trusted keys move with it. */
  commit(m: Pick<Manifest, 'addKeys' | 'removeKeys'> = {}): SlotState {
    const s = this.state()
    if (!s.trial) throw new UpdateError('no version is on trial')
    const t = s.trial
    const removed = new Set(m.removeKeys ?? [])
    const keys = [...s.trustedKeys, ...(m.addKeys ?? [])].filter((pem, i, all) => all.indexOf(pem) === i && !removed.has(keyId(trustedKeys([pem])[0]!)))
    if (!keys.length) throw new UpdateError('the bundle would leave the box trusting no vendor key')
    const next: SlotState = {
      slots: { ...s.slots, [t.slot]: { version: t.version, securityVersion: t.securityVersion } },
      minSecurityVersion: Math.max(s.minSecurityVersion, t.securityVersion),
      trustedKeys: keys,
      lastUpdate: { version: t.version, outcome: 'committed', reason: 'healthy on trial', at: this.#iso() },
    }
    this.#save(
      { ...next, events: s.events },
      {
        step: 'committed',
        version: t.version,
        outcome: 'ok',
        detail: `minimum security version ${next.minSecurityVersion}; ${keys.length} vendor key(s) trusted`,
      },
    )
    return next
  }

  /** Back to the slot the trial came from. Returns the reason. */
  rollback(reason: string): string {
    const s = this.state()
    if (!s.trial) throw new UpdateError('no version is on trial')
    this.#link(s.trial.from)
    // #31: the slot keeps the version that was tried: the state says so (it said the one it replaced).
    const tried = this.manifestOf(s.trial.slot)
    const slots = tried ? { ...s.slots, [s.trial.slot]: { version: tried.version, securityVersion: tried.securityVersion } } : s.slots
    this.#save(
      { ...s, slots, trial: undefined, lastUpdate: { version: s.trial.version, outcome: 'rolled back', reason, at: this.#iso() } },
      { step: 'rolled back', version: s.trial.version, outcome: 'failed', detail: `${reason}; back to slot ${s.trial.from}` },
    )
    return reason
  }

  /** A refusal, for the dashboard and the next status: the reason is shown, not swallowed. */
  refused(version: string, reason: string): void {
    const s = this.state()
    this.#save({ ...s, lastUpdate: { version, outcome: 'refused', reason, at: this.#iso() } }, { step: 'refused', version, outcome: 'failed', detail: reason })
  }

  #iso(): string {
    return new Date(this.#now()).toISOString()
  }
}

/** The slot root a daemon runs from, if it runs from a slot (`<root>/slots/<x>/firmware/…`). */
export function slotRootOf(firmwareDir: string): { root: string; slot: Slot } | undefined {
  const m = /^(.*)\/slots\/([ab])\/firmware\/?$/.exec(firmwareDir)
  return m ? { root: m[1]!, slot: m[2] as Slot } : undefined
}
