import { createHash, randomBytes } from 'node:crypto'
import { join } from 'node:path'
import type { Clock } from '../../hal/clock.ts'
import type { EventSink } from '../events.ts'
import { parseConfig, type Config } from './load.ts'
import { migrateConfig } from './migrations.ts'
import { ProposalError, ProposalFiles, type ProposalRecord } from './proposal-files.ts'
import { canonicalJson, type ConfigVersion, type ConfigVersions } from './versions.ts'

/**
 * Four eyes on the configuration (S5, S7; the audit findings in reference
 * 002 about changes nobody approved): a change is a proposal until a second
 * administrator — not its author — approves it; either may withdraw it; it
 * expires after `admin.proposalExpiryHours`. Approving applies it and makes
 * it the next version. A box with one administrator may be configured to let
 * the author approve (`admin.allowSelfApproval`), which is recorded every time.
 *
 * What the approver saw is what is applied: the approval names the
 * proposal's content hash, and a proposal whose file says something else by
 * then is refused.
 */
export { ProposalError, type ProposalState } from './proposal-files.ts'

export interface Proposal extends ProposalRecord {
  /** The version in force when it was proposed (the diff is against it). */
  baseVersion: number
  config: unknown
  /** The version approving it made. */
  version?: number
}

/** Applies a configuration to the running box; throws when a component refuses it (the box then keeps the old one). */
export type Apply = (next: Config, previous: Config) => Promise<void>

export class Proposals {
  readonly #files: ProposalFiles<Proposal>
  readonly #versions: ConfigVersions
  readonly #clock: Clock
  readonly #events: EventSink
  readonly #expiryMs: number
  readonly #allowSelf: boolean

  constructor(o: { dataDir: string; versions: ConfigVersions; clock: Clock; events: EventSink; expiryHours: number; allowSelfApproval: boolean }) {
    this.#files = new ProposalFiles<Proposal>(join(o.dataDir, 'config', 'proposals'), o.clock, (p, state, who) => this.#event(p, state, who))
    this.#versions = o.versions
    this.#clock = o.clock
    this.#events = o.events
    this.#expiryMs = o.expiryHours * 3_600_000
    this.#allowSelf = o.allowSelfApproval
  }

  get dir(): string {
    return this.#files.dir
  }

  get selfApprovalAllowed(): boolean {
    return this.#allowSelf
  }

  /** A new proposal, checked against the schema first (a ConfigError names the key). */
  async propose(author: string, config: unknown, reason: string): Promise<Proposal> {
    if (!reason.trim()) throw new ProposalError('A reason is needed: the audit trail and the approver read it.')
    parseConfig(config)
    const base = await this.#versions.inForce()
    if (base && canonicalJson(migrateConfig(base.config).config) === canonicalJson(migrateConfig(config).config))
      throw new ProposalError('That is the configuration in force already.')
    const now = this.#clock.now()
    const p: Proposal = {
      id: randomBytes(6).toString('hex'),
      baseVersion: base?.number ?? 0,
      author,
      reason: reason.trim(),
      createdAt: now,
      expiresAt: now + this.#expiryMs,
      config,
      state: 'open',
    }
    this.#files.save(p)
    this.#event(p, 'proposed', author)
    return p
  }

  /** A proposal to go back to an earlier version ("restore version 41"), through the same approval. */
  async restore(author: string, number: number, reason: string): Promise<Proposal> {
    const v = (await this.#versions.verifyAll()).find((x) => x.number === number)
    if (!v) throw new ProposalError(`There is no version ${number}.`)
    // A version from before a firmware upgrade comes back at the current schema.
    return this.propose(author, migrateConfig(v.config).config, `restore version ${number}: ${reason.trim()}`)
  }

  /** Every proposal, newest first; open ones past their time are marked expired (and recorded) on the way. */
  list(): Proposal[] {
    return this.#files.list()
  }

  get(id: string): Proposal | undefined {
    return this.#files.get(id)
  }

  /** What the approver is shown and names when approving: the hash of the proposed configuration. */
  static contentHash(p: Proposal): string {
    return createHash('sha256').update(canonicalJson(p.config)).digest('hex')
  }

  /**
   * Approves and applies: `apply` puts the configuration into the running box; when
   * it throws, the box goes back to the one in force and the proposal is recorded as
   * failed. On success the configuration becomes the next version.
   */
  async approve(id: string, approver: string, seenHash: string, apply: Apply): Promise<ConfigVersion> {
    const p = this.#files.mustOpen(id)
    const self = p.author === approver
    if (self && !this.#allowSelf) throw new ProposalError('A change is approved by a second administrator, not by its author.')
    if (Proposals.contentHash(p) !== seenHash) throw new ProposalError('The proposal is not what was shown any more; open it again.')
    const base = await this.#versions.inForce()
    if ((base?.number ?? 0) !== p.baseVersion)
      throw new ProposalError(`Version ${base?.number} came into force after this was proposed against version ${p.baseVersion}; propose it again.`)
    const previous = parseConfig(base?.config ?? {})
    const next = parseConfig(p.config)
    try {
      await apply(next, previous)
    } catch (err) {
      await apply(previous, next).catch(() => undefined)
      this.#files.decide(p, 'failed', approver, { note: `a component refused it: ${(err as Error).message}` })
      throw new ProposalError(`Not applied, the box keeps version ${p.baseVersion}: ${(err as Error).message}`)
    }
    const version = await this.#versions.add({
      config: p.config,
      author: p.author,
      approver,
      reason: self ? `${p.reason} (approved by its author: self-approval is allowed on this box)` : p.reason,
      source: 'page',
    })
    this.#files.decide(p, 'approved', approver, { ...(self ? { note: 'self-approved' } : {}), version: version.number })
    return version
  }

  /** The author or any administrator withdraws an open proposal. */
  withdraw(id: string, who: string): void {
    this.#files.decide(this.#files.mustOpen(id), 'withdrawn', who)
  }

  #event(p: Proposal, action: string, who: string): void {
    this.#events.emit({
      type: 'config.proposal',
      id: p.id,
      action,
      who,
      author: p.author,
      reason: p.reason,
      baseVersion: p.baseVersion,
      ...(p.version ? { version: p.version } : {}),
      ...(p.note ? { note: p.note } : {}),
    })
  }
}
