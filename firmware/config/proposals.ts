import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Clock } from '../../hal/clock.ts'
import { writeFileAtomic } from '../../hal/storage/files.ts'
import type { EventSink } from '../events.ts'
import { parseConfig, type Config } from './load.ts'
import { migrateConfig } from './migrations.ts'
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
export type ProposalState = 'open' | 'approved' | 'withdrawn' | 'expired' | 'failed'

export interface Proposal {
  id: string
  /** The version in force when it was proposed (the diff is against it). */
  baseVersion: number
  author: string
  reason: string
  createdAt: number
  expiresAt: number
  config: unknown
  state: ProposalState
  decidedBy?: string
  decidedAt?: number
  /** The version approving it made. */
  version?: number
  /** Why it failed (a component refused it), or the approval's note on self-approval. */
  note?: string
}

export class ProposalError extends Error {}

/** Applies a configuration to the running box; throws when a component refuses it (the box then keeps the old one). */
export type Apply = (next: Config, previous: Config) => Promise<void>

export class Proposals {
  readonly dir: string
  readonly #versions: ConfigVersions
  readonly #clock: Clock
  readonly #events: EventSink
  readonly #expiryMs: number
  readonly #allowSelf: boolean

  constructor(o: { dataDir: string; versions: ConfigVersions; clock: Clock; events: EventSink; expiryHours: number; allowSelfApproval: boolean }) {
    this.dir = join(o.dataDir, 'config', 'proposals')
    this.#versions = o.versions
    this.#clock = o.clock
    this.#events = o.events
    this.#expiryMs = o.expiryHours * 3_600_000
    this.#allowSelf = o.allowSelfApproval
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
    this.#save(p)
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
    let names: string[] = []
    try {
      names = readdirSync(this.dir).filter((n) => n.endsWith('.json'))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    const all = names.map((n) => this.#expire(JSON.parse(readFileSync(join(this.dir, n), 'utf8')) as Proposal))
    return all.sort((a, b) => b.createdAt - a.createdAt)
  }

  get(id: string): Proposal | undefined {
    if (!/^[0-9a-f]{12}$/.test(id)) return undefined
    try {
      return this.#expire(JSON.parse(readFileSync(join(this.dir, `${id}.json`), 'utf8')) as Proposal)
    } catch {
      return undefined
    }
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
    const p = this.#mustOpen(id)
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
      this.#decide(p, 'failed', approver, `a component refused it: ${(err as Error).message}`)
      throw new ProposalError(`Not applied, the box keeps version ${p.baseVersion}: ${(err as Error).message}`)
    }
    const version = await this.#versions.add({
      config: p.config,
      author: p.author,
      approver,
      reason: self ? `${p.reason} (approved by its author: self-approval is allowed on this box)` : p.reason,
      source: 'page',
    })
    this.#decide(p, 'approved', approver, self ? 'self-approved' : undefined, version.number)
    return version
  }

  /** The author or any administrator withdraws an open proposal. */
  withdraw(id: string, who: string): void {
    this.#decide(this.#mustOpen(id), 'withdrawn', who)
  }

  #mustOpen(id: string): Proposal {
    const p = this.get(id)
    if (!p) throw new ProposalError(`No proposal ${id}.`)
    if (p.state !== 'open') throw new ProposalError(`Proposal ${id} is ${p.state}.`)
    return p
  }

  #expire(p: Proposal): Proposal {
    if (p.state === 'open' && this.#clock.now() > p.expiresAt) this.#decide(p, 'expired', 'box')
    return p
  }

  #decide(p: Proposal, state: ProposalState, who: string, note?: string, version?: number): void {
    p.state = state
    p.decidedBy = who
    p.decidedAt = this.#clock.now()
    if (note) p.note = note
    if (version) p.version = version
    this.#save(p)
    this.#event(p, state, who)
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

  #save(p: Proposal): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    writeFileAtomic(join(this.dir, `${p.id}.json`), `${JSON.stringify(p, null, 1)}\n`, 0o600)
  }
}
