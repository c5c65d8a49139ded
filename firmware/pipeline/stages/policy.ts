import { createHash } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import type { Component } from '../../component.ts'
import type { Config } from '../../config/load.ts'
import { GatewayError } from '../../errors.ts'
import type { EventSink } from '../../events.ts'
import type { Logger } from '../../log.ts'
import { MimeError } from '../../mime/header.ts'
import type { Submitted } from '../handoff.ts'
import type { Stage } from '../stage.ts'
import { type PolicyHit } from '../../policy/inspect.ts'
import { InspectionPool, InspectionTimeout } from '../../policy/pool.ts'
import { boxError } from '../../box-errors.ts'

/**
 * The statement policy gate (M1, M12, M13), inside the submission transaction
 * and before signing. Every mail is read here, once, in an inspection worker
 * (firmware/policy/pool.ts): a structure readers could take differently is
 * refused (EMESSAGE_AMBIGUOUS and kin), and what later stages need travels on
 * with the mail (`facts`). When a profile applies, a mail that breaks a rule
 * in `enforce` mode is refused with the rule's code and the reason in plain
 * words; in `monitor` mode it is accepted and the hit recorded. Every decision
 * becomes an event (no content). An inspection past `policy.inspectionBudgetMs`
 * is a temporary failure (451), never an unchecked acceptance.
 */
export class PolicyStage implements Stage, Component {
  readonly name = 'submission:policy'
  #config: Config
  readonly #log: Logger
  readonly #events: EventSink
  readonly #consent = new Map<string, Set<string>>()
  /** Per profile: the consent file, the version in force and the version seen at the last check. */
  readonly #consentFiles = new Map<string, { path: string; loaded: string; seen: string }>()
  #timer: NodeJS.Timeout | undefined
  #checking = false
  #pool: InspectionPool | undefined
  /** Per rule: how often it refused and how often it hit in monitor mode (metrics). */
  readonly counters = new Map<string, { refused: number; monitored: number }>()

  constructor(deps: { config: Config; log: Logger; events: EventSink }) {
    this.#config = deps.config
    this.#log = deps.log.child({ component: 'policy' })
    this.#events = deps.events
  }

  /** The policy the next mail is checked against (S7: an approved change shows here at once). */
  get policy(): Config['policy'] {
    return this.#config.policy
  }

  // Component.start: an unreadable consent file is a rejection like any other start failure.
  // eslint-disable-next-line @typescript-eslint/require-await
  async start(): Promise<void> {
    for (const p of this.#config.policy.profiles) {
      if (p.consentFile) {
        // At start an unreadable file stops the box (the firm must notice); an empty one is only a warning.
        const version = fileVersion(p.consentFile)
        const { list, sha256 } = parseConsent(readFileSync(p.consentFile))
        this.#consent.set(p.name, list)
        this.#consentFiles.set(p.name, { path: p.consentFile, loaded: version, seen: version })
        this.#consentEvent(p.name, list.size, sha256, 'loaded')
        if (list.size === 0) this.#log.warn({ profile: p.name, file: p.consentFile }, 'consent list is empty: every recipient will be refused')
      }
    }
    if (this.#consentFiles.size) {
      this.#timer = setInterval(() => void this.checkConsentFiles(), this.#config.policy.consentCheckSeconds * 1000)
      this.#timer.unref()
    }
    const p = this.#config.policy
    this.#pool = new InspectionPool({ workers: p.inspectionWorkers, budgetMs: p.inspectionBudgetMs, profiles: p.profiles, log: this.#log })
    this.#pool.start()
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer)
    await this.#pool?.stop()
  }

  /**
   * S7: a new policy without a restart (an approved configuration change). The
   * new profiles' consent files are read first and their inspection workers
   * started; only then does the stage switch, so a change that cannot be read
   * throws here and the policy in force stays. Mail being inspected finishes
   * under the old rules.
   */
  async reconfigure(config: Config): Promise<void> {
    const consent = new Map<string, Set<string>>()
    const files = new Map<string, { path: string; loaded: string; seen: string }>()
    for (const p of config.policy.profiles) {
      if (!p.consentFile) continue
      const version = fileVersion(p.consentFile)
      const { list } = parseConsent(readFileSync(p.consentFile))
      consent.set(p.name, list)
      files.set(p.name, { path: p.consentFile, loaded: version, seen: version })
    }
    const p = config.policy
    const pool = new InspectionPool({ workers: p.inspectionWorkers, budgetMs: p.inspectionBudgetMs, profiles: p.profiles, log: this.#log })
    pool.start()
    const old = this.#pool
    this.#config = config
    this.#pool = pool
    this.#consent.clear()
    for (const [k, v] of consent) this.#consent.set(k, v)
    this.#consentFiles.clear()
    for (const [k, v] of files) this.#consentFiles.set(k, v)
    if (files.size && !this.#timer) {
      this.#timer = setInterval(() => void this.checkConsentFiles(), p.consentCheckSeconds * 1000)
      this.#timer.unref()
    }
    this.#log.info({ profiles: p.profiles.map((x) => x.name) }, 'policy changed without a restart')
    await old?.stop()
  }

  /**
   * Picks up a new version of each consent file (M1: the firm exports it). A
   * file is reread only once it has looked the same at two checks in a row, so
   * an export still being written is not read half-way; an empty or unreadable
   * new version keeps the list in force. Called by a timer.
   */
  async checkConsentFiles(): Promise<void> {
    if (this.#checking) return
    this.#checking = true
    try {
      await this.#checkConsentFiles()
    } finally {
      this.#checking = false
    }
  }

  async #checkConsentFiles(): Promise<void> {
    for (const [profile, f] of this.#consentFiles) {
      const now = fileVersion(f.path)
      if (now === f.loaded) {
        f.seen = now
        continue
      }
      if (now !== f.seen) {
        f.seen = now // changed since the last look: wait until it stops changing
        continue
      }
      let next: { list: Set<string>; sha256: string }
      try {
        next = parseConsent(await readFile(f.path))
      } catch (err) {
        this.#consentEvent(
          profile,
          this.#consent.get(profile)?.size ?? 0,
          '',
          'kept-previous',
          `cannot read ${f.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        )
        f.loaded = now
        continue
      }
      f.loaded = now
      if (next.list.size === 0) {
        this.#consentEvent(profile, this.#consent.get(profile)?.size ?? 0, next.sha256, 'kept-previous', 'the new file lists no address')
        continue
      }
      this.#consent.set(profile, next.list)
      this.#consentEvent(profile, next.list.size, next.sha256, 'loaded')
    }
  }

  #consentEvent(profile: string, addresses: number, sha256: string, outcome: 'loaded' | 'kept-previous', reason?: string): void {
    this.#events.emit({ type: 'policy.consent_list', profile, addresses, sha256, outcome, ...(reason ? { reason } : {}) })
    if (outcome === 'loaded') this.#log.info({ profile, addresses }, 'consent list loaded')
    else this.#log.error({ profile, reason }, 'new consent list not used; the previous one stays in force')
  }

  async process(mail: Submitted): Promise<Submitted> {
    if (!this.#pool) throw boxError('EINTERNAL', 'policy stage is not started')
    const env = mail.envelope
    // Taken now: a large mail's memory is with the inspection worker until it answers.
    const bytes = mail.message.length
    let outcome
    let message: Buffer
    try {
      ;({ outcome, message } = await this.#pool.run({ message: mail.message, account: env.account, mailFrom: env.mailFrom }))
    } catch (err) {
      if (err instanceof MimeError) {
        this.#count('structure', 'enforce')
        throw new GatewayError(err.code, err.message)
      }
      if (err instanceof InspectionTimeout) {
        this.#count('inspection-budget', 'enforce')
        this.#events.emit({ type: 'policy.inspection_budget', id: env.id, account: env.account, bytes, budgetMs: this.#config.policy.inspectionBudgetMs })
        throw new GatewayError('ETEMPORARY', 'the message could not be checked in time; try again later', { cause: err })
      }
      throw err
    }
    const { facts } = outcome
    const profile = this.#config.policy.profiles.find((p) => p.name === outcome.profile)
    const statement = { statementClass: facts.statementClass ?? (profile?.statementClass || undefined), statementId: facts.statementId, batch: facts.batch }
    const checked: Submitted = {
      ...mail,
      message,
      facts,
      envelope: {
        ...env,
        statementId: facts.statementId,
        statementClass: statement.statementClass,
        batch: facts.batch,
        tagged: true,
        autoSubmitted: facts.autoSubmitted,
        isReport: facts.isReport,
        profile: outcome.profile || undefined,
      },
    }
    if (!profile) {
      // No rules apply, but the audit trail still learns which statement this is (S6).
      this.#events.emit({ type: 'policy.accepted', id: env.id, account: env.account, profile: '', ...statement })
      return checked
    }
    const hits: PolicyHit[] = [...outcome.hits]
    const rcpts = env.rcptTo
    if (rcpts.length > profile.maxRecipients)
      hits.push({
        rule: 'recipients',
        mode: 'enforce',
        code: 'EPOLICY_RECIPIENTS',
        reason: `${rcpts.length} recipients; a statement goes to at most ${profile.maxRecipients}`,
      })
    const consent = this.#consent.get(profile.name)
    if (consent && rcpts.some((r) => !consent.has(r.toLowerCase())))
      hits.push({ rule: 'consent', mode: 'enforce', code: 'EPOLICY_NO_CONSENT', reason: 'a recipient has no e-statement consent on file' })

    const account = env.account
    for (const h of hits) {
      this.#count(h.rule, h.mode)
      this.#events.emit({
        type: 'policy.decision',
        id: env.id,
        account,
        profile: profile.name,
        rule: h.rule,
        mode: h.mode,
        outcome: h.mode === 'enforce' ? 'refused' : 'monitor-hit',
        ...statement,
      })
    }
    const refusal = hits.find((h) => h.mode === 'enforce')
    if (refusal) {
      this.#log.info({ id: env.id, account, profile: profile.name, rule: refusal.rule, code: refusal.code }, 'policy refused')
      throw new GatewayError(refusal.code, refusal.reason)
    }
    if (hits.length) this.#log.warn({ id: env.id, account, profile: profile.name, rules: hits.map((h) => h.rule) }, 'policy monitor hits (accepted)')
    this.#events.emit({ type: 'policy.accepted', id: env.id, account, profile: profile.name, ...statement })
    return checked
  }

  #count(rule: string, mode: 'monitor' | 'enforce'): void {
    const c = this.counters.get(rule) ?? { refused: 0, monitored: 0 }
    if (mode === 'enforce') c.refused++
    else c.monitored++
    this.counters.set(rule, c)
  }
}

/** Size, modification time and inode: enough to notice a rewritten or replaced file. Absent: "missing". */
function fileVersion(path: string): string {
  try {
    const st = statSync(path)
    return `${st.size}:${st.mtimeMs}:${st.ino}`
  } catch {
    return 'missing'
  }
}

/** One address per line, or the first CSV column; lines without "@" (headers, blanks) are skipped. */
function parseConsent(bytes: Buffer): { list: Set<string>; sha256: string } {
  const list = new Set(
    bytes
      .toString('utf8')
      .split(/\r?\n/)
      .map((l) => l.split(',')[0]!.trim().replace(/^"|"$/g, '').toLowerCase())
      .filter((a) => a.includes('@')),
  )
  return { list, sha256: createHash('sha256').update(bytes).digest('hex') }
}
