import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Component } from '../component.ts'
import type { EventSink } from '../events.ts'
import type { Logger } from '../log.ts'
import { boxError } from '../box-errors.ts'
import { Slots, slotRootOf, type Slot, type SlotState } from './slots.ts'

/**
 * The daemon's side of updates: it records every update step the tools took
 * (`firmware.update` in the audit trail; the installer cannot write the trail
 * while the box runs), and when it runs a version on trial it checks itself —
 * listeners up, HSM keys there, spool readable, configuration verified — and
 * commits the version. A failed self-test stops the start, so the service
 * manager restarts it and, after a few failures, `image boot` rolls back.
 * Started last, after every other component.
 */
export interface FirmwareView {
  running: string
  slot: Slot | undefined
  other: string | undefined
  trial: boolean
  minSecurityVersion: number | undefined
  lastUpdate: SlotState['lastUpdate']
}

const SELF_TEST_MS = 60_000

export class UpdateAgent implements Component {
  readonly name = 'update'
  readonly #slots: Slots | undefined
  readonly #slot: Slot | undefined
  readonly #events: EventSink
  readonly #log: Logger
  readonly #selfTest: () => Promise<string | undefined>
  readonly #devVersion: string
  #timer: NodeJS.Timeout | undefined

  /** `firmwareDir`: where main.ts is; a slot's firmware directory on the appliance, a checkout in development. */
  constructor(o: { firmwareDir: string; events: EventSink; log: Logger; selfTest: () => Promise<string | undefined> }) {
    const at = slotRootOf(o.firmwareDir)
    this.#slots = at && new Slots(at.root)
    this.#slot = at?.slot
    this.#events = o.events
    this.#log = o.log.child({ component: 'update' })
    this.#selfTest = o.selfTest
    this.#devVersion = (JSON.parse(readFileSync(join(o.firmwareDir, '..', 'package.json'), 'utf8')) as { version: string }).version
  }

  async start(): Promise<void> {
    const slots = this.#slots
    if (!slots) return
    this.#drain()
    const s = slots.state()
    if (s.trial && s.trial.slot === this.#slot) {
      const problem = await Promise.race([
        this.#selfTest().catch((err: Error) => err.message),
        new Promise<string>((r) => setTimeout(() => r(`no healthy start within ${SELF_TEST_MS / 1000} s`), SELF_TEST_MS).unref()),
      ])
      if (problem) {
        this.#events.emit({ type: 'firmware.update', step: 'self-test', version: s.trial.version, outcome: 'failed', detail: problem })
        throw boxError('EUPDATE_REFUSED', `version ${s.trial.version} on trial is not healthy: ${problem}`)
      }
      slots.commit(slots.manifestOf(this.#slot) ?? {})
      this.#log.info({ version: s.trial.version }, 'version on trial is healthy: committed')
      this.#drain()
    }
    this.#timer = setInterval(() => this.#drain(), 5000)
    this.#timer.unref()
  }

  stop(): Promise<void> {
    clearInterval(this.#timer)
    this.#drain()
    return Promise.resolve()
  }

  /** What the dashboard shows: the version running, the other slot's, and the last update's outcome with its reason. */
  view(): FirmwareView {
    const slots = this.#slots
    if (!slots || !this.#slot)
      return {
        running: `${this.#devVersion} (development checkout)`,
        slot: undefined,
        other: undefined,
        trial: false,
        minSecurityVersion: undefined,
        lastUpdate: undefined,
      }
    const s = slots.state()
    const other = this.#slot === 'a' ? 'b' : 'a'
    return {
      running: s.trial?.slot === this.#slot ? s.trial.version : (s.slots[this.#slot]?.version ?? '?'),
      slot: this.#slot,
      other: s.slots[other]?.version,
      trial: s.trial?.slot === this.#slot,
      minSecurityVersion: s.minSecurityVersion,
      lastUpdate: s.lastUpdate,
    }
  }

  /** The vendor keys the box trusts (for checking an upload before it is staged). */
  trustedKeys(): string[] {
    return this.#slots ? this.#slots.state().trustedKeys : []
  }

  #drain(): void {
    try {
      for (const e of this.#slots?.takeEvents() ?? [])
        this.#events.emit({ type: 'firmware.update', step: e.step, version: e.version, outcome: e.outcome, detail: `${e.detail} (at ${e.at})` })
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'cannot read the update state')
    }
  }
}

/**
 * ETSI 5.3: the self-test a version on trial runs once everything is up: HSM keys there,
 * configuration versions verified, spool readable, submission listening, trail accepting.
 * Undefined when healthy, else what is wrong.
 */
export function readinessSelfTest(p: {
  hsm: { check(): Promise<{ error?: string | undefined; keys: { label: string; present: boolean }[] }> }
  versions: { verifyAll(): Promise<unknown> }
  spool: { stats(): unknown }
  submissionPort: () => number | undefined
  auditAccepting: () => boolean
}): () => Promise<string | undefined> {
  return async () => {
    const h = await p.hsm.check()
    const missing = h.keys.filter((k) => !k.present).map((k) => k.label)
    if (h.error || missing.length) return `the HSM is not ready: ${h.error ?? missing.join(', ')}`
    await p.versions.verifyAll()
    p.spool.stats()
    if (!p.submissionPort()) return 'submission is not listening'
    return p.auditAccepting() ? undefined : 'the audit trail is not accepting records'
  }
}
