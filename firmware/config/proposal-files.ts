import { mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Clock } from '../../hal/clock.ts'
import { writeFileAtomic } from '../../hal/storage/files.ts'
import { createError } from '../box-errors.ts'

export type ProposalState = 'open' | 'approved' | 'withdrawn' | 'expired' | 'failed'

/** What every four-eyes proposal has (S5, S7): who asked and why, its life, and who decided it. */
export interface ProposalRecord {
  id: string
  author: string
  reason: string
  createdAt: number
  expiresAt: number
  state: ProposalState
  decidedBy?: string
  decidedAt?: number
  /** Why it failed, or a note on its approval. */
  note?: string
}

export class ProposalError extends createError('EPROPOSAL_REFUSED', 'ProposalError') {}

/**
 * A directory of proposals, one 0600 file each: the lifecycle the
 * configuration's proposals and the accounts' share (#31) — open until a
 * second person decides, withdrawn, or expired past its time (recorded
 * through `decided` like any other decision).
 */
export class ProposalFiles<P extends ProposalRecord> {
  readonly dir: string
  readonly #clock: Clock
  readonly #decided: (p: P, state: ProposalState, who: string) => void

  constructor(dir: string, clock: Clock, decided: (p: P, state: ProposalState, who: string) => void) {
    this.dir = dir
    this.#clock = clock
    this.#decided = decided
  }

  /** Every proposal, newest first; open ones past their time are marked expired (and recorded) on the way. */
  list(): P[] {
    let names: string[] = []
    try {
      names = readdirSync(this.dir).filter((n) => n.endsWith('.json'))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    const all = names.map((n) => this.#expire(JSON.parse(readFileSync(join(this.dir, n), 'utf8')) as P))
    return all.sort((a, b) => b.createdAt - a.createdAt)
  }

  get(id: string): P | undefined {
    if (!/^[0-9a-f]{12}$/.test(id)) return undefined
    try {
      return this.#expire(JSON.parse(readFileSync(join(this.dir, `${id}.json`), 'utf8')) as P)
    } catch {
      return undefined
    }
  }

  /** The open proposal `id`, or a ProposalError saying why not. */
  mustOpen(id: string): P {
    const p = this.get(id)
    if (!p) throw new ProposalError(`No proposal ${id}.`)
    if (p.state !== 'open') throw new ProposalError(`Proposal ${id} is ${p.state}.`)
    return p
  }

  decide(p: P, state: ProposalState, who: string, fields: Partial<P> = {}): void {
    Object.assign(p, fields, { state, decidedBy: who, decidedAt: this.#clock.now() })
    this.save(p)
    this.#decided(p, state, who)
  }

  save(p: P): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    writeFileAtomic(join(this.dir, `${p.id}.json`), `${JSON.stringify(p, null, 1)}\n`, 0o600)
  }

  #expire(p: P): P {
    if (p.state === 'open' && this.#clock.now() > p.expiresAt) this.decide(p, 'expired', 'box')
    return p
  }
}
