import { createHash } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import type { Component } from '../component.ts'
import { firstMailbox, fromAddress } from '../mime/address.ts'
import { parseEntity } from '../mime/entity.ts'
import type { Config } from '../config/load.ts'
import { GatewayError, type ErrorCode } from '../errors.ts'
import type { EventSink } from '../events.ts'
import type { Logger } from '../log.ts'
import type { Submitted } from '../pipeline/handoff.ts'
import type { Stage } from '../pipeline/stage.ts'
import { inspect, MalformedMessage, statementTags } from './inspect.ts'
import { pdfEncryption } from './pdf.ts'
import { findTaiwanIds, maskId } from './taiwan-id.ts'
import { zipEntries } from './zip.ts'

type Profile = Config['policy']['profiles'][number]
type Mode = 'off' | 'monitor' | 'enforce'

interface Hit {
  rule: string
  mode: Mode
  error: GatewayError
}

const domainOf = (address: string) => address.slice(address.lastIndexOf('@') + 1).toLowerCase()

/**
 * The statement policy gate (M1, M12, M13), inside the submission transaction
 * and before signing: a mail that breaks a rule in `enforce` mode is refused
 * with the rule's code and the reason in plain words; in `monitor` mode it is
 * accepted and the hit recorded. Every decision becomes an event (no content).
 */
export class PolicyStage implements Stage, Component {
  readonly name = 'policy'
  readonly #config: Config
  readonly #log: Logger
  readonly #events: EventSink
  readonly #consent = new Map<string, Set<string>>()
  /** Per profile: the consent file, the version in force and the version seen at the last check. */
  readonly #consentFiles = new Map<string, { path: string; loaded: string; seen: string }>()
  #timer: NodeJS.Timeout | undefined
  #checking = false
  readonly #patterns = new Map<string, RegExp[]>()
  /** Per rule: how often it refused and how often it hit in monitor mode (metrics). */
  readonly counters = new Map<string, { refused: number; monitored: number }>()

  constructor(deps: { config: Config; log: Logger; events: EventSink }) {
    this.#config = deps.config
    this.#log = deps.log.child({ component: 'policy' })
    this.#events = deps.events
  }

  async start(): Promise<void> {
    for (const p of this.#config.policy.profiles) {
      this.#patterns.set(p.name, p.patterns.map((r) => new RegExp(r, 'gu')))
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
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer)
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
        this.#consentEvent(profile, this.#consent.get(profile)?.size ?? 0, '', 'kept-previous', `cannot read ${f.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
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

  profileFor(mail: Submitted, fromDomain: string | undefined): Profile | undefined {
    const profiles = this.#config.policy.profiles
    const account = mail.envelope.account
    return (
      (account ? profiles.find((p) => p.accounts.includes(account)) : undefined) ??
      profiles.find((p) => p.domains.includes(domainOf(mail.envelope.mailFrom)) || (fromDomain !== undefined && p.domains.includes(fromDomain)))
    )
  }

  async process(mail: Submitted): Promise<Submitted> {
    const headerFrom = this.#config.policy.profiles.length ? fromAddress(mail.message) : undefined
    const profile = this.profileFor(mail, headerFrom ? domainOf(headerFrom) : undefined)
    if (!profile) {
      // No rules apply, but the audit trail still learns which statement this is (S6).
      let tags: ReturnType<typeof statementTags> = { statementClass: undefined, statementId: undefined }
      try {
        tags = statementTags(parseEntity(mail.message))
      } catch {
        // Not this stage's business without a profile; signing judges the message.
      }
      this.#events.emit({ type: 'policy.accepted', id: mail.envelope.id, account: mail.envelope.account, profile: '', statementClass: tags.statementClass?.slice(0, 32) || undefined, statementId: tags.statementId })
      return mail
    }
    const hits: Hit[] = []
    const rule = (name: string, mode: Mode, code: ErrorCode, reason: string) => {
      if (mode !== 'off') hits.push({ rule: name, mode, error: new GatewayError(code, reason) })
    }

    const rcpts = mail.envelope.rcptTo
    if (rcpts.length > profile.maxRecipients) rule('recipients', 'enforce', 'EPOLICY_RECIPIENTS', `${rcpts.length} recipients; a statement goes to at most ${profile.maxRecipients}`)
    const consent = this.#consent.get(profile.name)
    if (consent) for (const r of rcpts) if (!consent.has(r.toLowerCase())) rule('consent', 'enforce', 'EPOLICY_NO_CONSENT', 'a recipient has no e-statement consent on file')

    const allowed = (profile.allowedSenders.length ? profile.allowedSenders : profile.domains).map((s) => s.toLowerCase())
    const senderOk = (addr: string) => allowed.includes(addr.toLowerCase()) || allowed.includes(domainOf(addr))

    // Attachments are checked as the walk decodes them, one at a time, and then dropped.
    let pdfs = 0
    const checkAttachment = (a: { filename: string; mime: string; content: Buffer }) => {
      const name = a.filename || '(unnamed)'
      const isPdf = a.mime === 'application/pdf' || /\.pdf$/i.test(a.filename)
      const isZip = a.mime === 'application/zip' || a.mime === 'application/x-zip-compressed' || /\.zip$/i.test(a.filename)
      if (profile.attachmentTypes.length && !profile.attachmentTypes.includes(a.mime) && !(isPdf && profile.attachmentTypes.includes('application/pdf'))) {
        rule('attachment-type', 'enforce', 'EPOLICY_ATTACHMENT_TYPE', `attachment "${name}" of type ${a.mime} is not allowed`)
      }
      if (isPdf) {
        pdfs++
        if (pdfEncryption(a.content) !== 'encrypted') rule('pdf-encryption', profile.pdfEncryption, 'EPOLICY_PDF_UNENCRYPTED', `attachment "${name}" is not encrypted`)
      } else if (isZip) {
        const entries = zipEntries(a.content)
        if (!entries) rule('zip-encryption', profile.zipEncryption, 'EPOLICY_ZIP_UNENCRYPTED', `attachment "${name}" is not a readable ZIP archive`)
        else if (entries.some((e) => !e.encrypted)) rule('zip-encryption', profile.zipEncryption, 'EPOLICY_ZIP_UNENCRYPTED', `attachment "${name}" has unencrypted entries`)
      }
    }
    let info
    try {
      info = inspect(mail.message, checkAttachment)
    } catch (err) {
      if (err instanceof MalformedMessage) throw new GatewayError('EMESSAGE_MALFORMED', err.message)
      throw err
    }
    const from = firstMailbox(info.fromHeader)
    if (!senderOk(mail.envelope.mailFrom)) rule('sender', profile.senderAlignment, 'EPOLICY_SENDER', `MAIL FROM <${mail.envelope.mailFrom}> is not an allowed sender`)
    else if (!from || !senderOk(from)) rule('sender', profile.senderAlignment, 'EPOLICY_SENDER', `From ${from ? `<${from}>` : '(missing)'} is not an allowed sender`)

    const cls = info.statementClass ?? (profile.statementClass || undefined)
    if (cls && profile.labelClasses.includes(cls) && !info.subject.includes(profile.label)) {
      // SMTP replies are US-ASCII (RFC 5321 §4.2), so the reply names the profile, not the (Chinese) label itself.
      rule('subject', profile.subjectLabel, 'EPOLICY_SUBJECT', `a ${cls} statement's subject must contain the label set in policy profile "${profile.name}"`)
    }

    if (profile.requirePdf && pdfs === 0) rule('pdf-required', 'enforce', 'EPOLICY_PDF_MISSING', 'the statement has no PDF attachment')

    const texts = [info.subject, ...info.texts]
    const ids = texts.flatMap(findTaiwanIds)
    if (ids.length) rule('deidentify', profile.deidentify, 'EPOLICY_UNMASKED_ID', `the message contains an unmasked national ID (${maskId(ids[0]!)})`)
    for (const re of this.#patterns.get(profile.name) ?? []) {
      if (texts.some((t) => (re.lastIndex = 0, re.test(t)))) rule('deidentify', profile.deidentify, 'EPOLICY_UNMASKED_ID', 'the message contains data matching a configured sensitive pattern')
    }

    const account = mail.envelope.account
    for (const h of hits) {
      const c = this.counters.get(h.rule) ?? { refused: 0, monitored: 0 }
      if (h.mode === 'enforce') c.refused++
      else c.monitored++
      this.counters.set(h.rule, c)
      this.#events.emit({ type: 'policy.decision', id: mail.envelope.id, account, profile: profile.name, rule: h.rule, mode: h.mode as 'monitor' | 'enforce', outcome: h.mode === 'enforce' ? 'refused' : 'monitor-hit' })
    }
    const refusal = hits.find((h) => h.mode === 'enforce')
    if (refusal) {
      this.#log.info({ id: mail.envelope.id, account, profile: profile.name, rule: refusal.rule, code: refusal.error.code }, 'policy refused')
      throw refusal.error
    }
    if (hits.length) this.#log.warn({ id: mail.envelope.id, account, profile: profile.name, rules: hits.map((h) => h.rule) }, 'policy monitor hits (accepted)')
    this.#events.emit({ type: 'policy.accepted', id: mail.envelope.id, account, profile: profile.name, statementClass: cls?.slice(0, 32), statementId: info.statementId })
    return mail
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
