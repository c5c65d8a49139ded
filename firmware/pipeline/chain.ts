import type { Clock } from '../../hal/clock.ts'
import type { Hsm } from '../../hal/hsm/index.ts'
import type { ConfigStore } from '../config/store.ts'
import type { EventSink } from '../events.ts'
import type { Logger } from '../log.ts'
import type { ReturnPathTokens } from '../return-path/verp.ts'
import { AuditCopyHandoff } from '../delivery/audit-copy.ts'
import type { TrackingTokens } from '../ledger/tokens.ts'
import type { Handoff } from './handoff.ts'
import { StagedHandoff } from './stage.ts'
import { PolicyStage } from './stages/policy.ts'
import { ReadReceiptStage } from './stages/read-receipt.ts'
import { SigningStage } from './stages/signing.ts'
import { TrackingStage } from './stages/tracking.ts'

/**
 * What a submitted mail goes through before the client gets its 250 — the one
 * place the order is written (#34). Each step is named `phase:event` in the
 * logs and the docs:
 *
 * 1. `submission:policy` — the statement rules, on one reading of the mail (S1, M1–M6); it
 *    carries the facts of that reading down the chain.
 * 2. `submission:tracking` — opens and clicks, when a profile or a read-receipt class asks (M9, M11).
 * 3. `submission:read-receipt` — the MDN request to the box's own return path (M11).
 * 4. `submission:signing` — S/MIME, then DKIM, over what the steps before wrote (M4, M5).
 * 5. `submission:spool` — encrypted and fsynced, with the archive copy (M7, M10); only then 250.
 *
 * Tracking and the read-receipt request come before signing so both signatures cover them.
 */
export const STAGE_ORDER = ['submission:policy', 'submission:tracking', 'submission:read-receipt', 'submission:signing', 'submission:spool'] as const

export interface Chain {
  /** Where the submission server hands each mail. */
  readonly handoff: Handoff
  /** The two stages that are also components (workers to start, keys to check). */
  readonly policy: PolicyStage
  readonly signing: SigningStage
  /** The stage names in order, spool last (what STAGE_ORDER promises, as built). */
  readonly names: readonly string[]
}

/** The chain, built in STAGE_ORDER: what main (through buildBox) and the tests run. */
export function buildChain(deps: {
  store: ConfigStore
  log: Logger
  events: EventSink
  clock: Clock
  hsm: Hsm
  tracking: TrackingTokens
  returnPath: ReturnPathTokens
  /** The spool (or a test's handoff that stands where it stands). */
  spool: Handoff
}): Chain {
  const config = deps.store.current
  const policy = new PolicyStage({ config, log: deps.log, events: deps.events })
  const signing = new SigningStage({ config, log: deps.log, hsm: deps.hsm, clock: deps.clock, events: deps.events })
  const stages = [
    policy,
    new TrackingStage({ store: deps.store, tokens: deps.tracking, log: deps.log }),
    new ReadReceiptStage({ store: deps.store, tokens: deps.returnPath }),
    signing,
  ]
  // A profile's `tracking` is read for each mail (#34: it took a restart while the stage kept its first config).
  deps.store.reads('submission:tracking', ['policy'])
  const names = [...stages.map((s) => s.name), 'submission:spool']
  return { handoff: new StagedHandoff(stages, new AuditCopyHandoff(deps.spool, config)), policy, signing, names }
}
