import type { Config } from '../config/load.ts'
import type { ErrorCode } from '../errors.ts'
import { domainOf } from '../mime/address.ts'
import { factsOf, type MessageFacts } from '../pipeline/facts.ts'
import { htmlText } from '../mime/html.ts'
import { field } from '../mime/header.ts'
import { decodedBody, isAttachment, parseMessage, walk, type MimeNode } from '../mime/tree.ts'
import { decodeCharset, decodeWords } from '../mime/words.ts'
import { compilePattern } from '../config/patterns.ts'
import { readable, reading } from '../pii/as-read.ts'
import { idsInReading, maskId } from '../pii/taiwan-id.ts'
import { pdfEncryption } from './pdf.ts'
import { declares, PDF, sniff, ZIP, type Format } from './sniff.ts'
import { readZip } from './zip.ts'

export type Profile = Config['policy']['profiles'][number]
type Mode = 'off' | 'monitor' | 'enforce'

export interface PolicyHit {
  rule: string
  mode: 'monitor' | 'enforce'
  code: ErrorCode
  reason: string
}

export interface InspectRequest {
  message: Buffer
  account: string | undefined
  mailFrom: string
}

export interface InspectOutcome {
  facts: MessageFacts
  /** The policy profile that applies, if any. */
  profile: string | undefined
  hits: PolicyHit[]
}

/** Header fields added by transport and signing, not shown to a person. */
const NOT_DISPLAYED = new Set([
  'received',
  'dkim-signature',
  'arc-seal',
  'arc-message-signature',
  'arc-authentication-results',
  'authentication-results',
  'content-type',
  'content-transfer-encoding',
])
/** Leaves whose content is text a person may read, attachment or not. */
const TEXTUAL = (mime: string) => mime.startsWith('text/') || mime === 'application/json' || mime === 'application/xml' || mime === 'application/csv'

/** What an attachment's type or name says it is, for one whose bytes are no format the box knows. */
function declaredFormats(node: MimeNode): Format[] {
  if (declares(node.mime, node.filename, PDF) || /\.pdf$/i.test(node.filename)) return [PDF]
  if (declares(node.mime, node.filename, ZIP) || /\.zip$/i.test(node.filename)) return [ZIP]
  return []
}

/** The profile for a mail (M1): by submission account, then by sender domain (envelope or From). */
export function selectProfile(
  profiles: readonly Profile[],
  account: string | undefined,
  mailFrom: string,
  fromDomain: string | undefined,
): Profile | undefined {
  return (
    (account ? profiles.find((p) => p.accounts.includes(account)) : undefined) ??
    profiles.find((p) => p.domains.includes(domainOf(mailFrom)) || (fromDomain !== undefined && p.domains.includes(fromDomain)))
  )
}

/**
 * Reads a mail once and judges it against its policy profile (M1, M12, M13):
 * everything except the rules on recipients, which need the consent lists the
 * main thread keeps. Runs in an inspection worker (firmware/policy/pool.ts),
 * off the event loop. Throws MimeError when the structure is malformed or
 * ambiguous.
 */
export function inspectMessage(
  req: InspectRequest,
  profiles: readonly Profile[],
  patterns: (profile: Profile) => RegExp[] = (p) => p.patterns.map(compilePattern),
): InspectOutcome {
  const buf = req.message
  const top = parseMessage(buf)
  const facts = factsOf(buf, top)
  const profile = selectProfile(profiles, req.account, req.mailFrom, facts.fromDomain)
  if (!profile) return { facts, profile: undefined, hits: [] }
  const hits: PolicyHit[] = []
  const rule = (name: string, mode: Mode, code: ErrorCode, reason: string) => {
    if (mode !== 'off') hits.push({ rule: name, mode, code, reason })
  }

  const allowed = (profile.allowedSenders.length ? profile.allowedSenders : profile.domains).map((s) => s.toLowerCase())
  const senderOk = (addr: string) => allowed.includes(addr.toLowerCase()) || allowed.includes(domainOf(addr))
  if (!senderOk(req.mailFrom)) rule('sender', profile.senderAlignment, 'EPOLICY_SENDER', `MAIL FROM <${req.mailFrom}> is not an allowed sender`)
  else if (!facts.from || !senderOk(facts.from))
    rule('sender', profile.senderAlignment, 'EPOLICY_SENDER', `From ${facts.from ? `<${facts.from}>` : '(missing)'} is not an allowed sender`)

  const subject = decodeWords(field(top, 'subject') ?? '')
  const cls = facts.statementClass ?? (profile.statementClass || undefined)
  if (cls && profile.labelClasses.includes(cls) && !readable(subject).includes(readable(profile.label))) {
    // SMTP replies are US-ASCII (RFC 5321 §4.2), so the reply names the profile, not the (Chinese) label itself.
    rule('subject', profile.subjectLabel, 'EPOLICY_SUBJECT', `a ${cls} statement's subject must contain the label set in policy profile "${profile.name}"`)
  }

  // Everything a person could read, for the de-identification rule.
  const texts: string[] = []
  let pdfs = 0
  for (const node of walk(top)) {
    for (const h of node.headers) if (!NOT_DISPLAYED.has(h.key)) texts.push(decodeWords(h.value))
    if (node.filename) texts.push(node.filename)
    if (node.children.length) continue
    const attachment = isAttachment(node)
    const content = decodedBody(buf, node)
    if (TEXTUAL(node.mime)) {
      const text = decodeCharset(content, node.params.charset)
      if (node.mime === 'text/html') {
        const h = htmlText(text)
        texts.push(h.source, h.joined, h.spaced)
      } else texts.push(text)
    }
    pdfs += judgeLeaf({ node, content, attachment, profile, rule, texts })
  }
  if (profile.requirePdf && pdfs === 0) rule('pdf-required', 'enforce', 'EPOLICY_PDF_MISSING', 'the statement has no PDF attachment')

  deidentify(texts, profile, patterns(profile), rule)
  return { facts, profile: profile.name, hits }
}

/** #32: one leaf judged by what its bytes are (types, PDF and ZIP encryption); what a person could read of it goes to `texts`. Its PDFs, counted. */
function judgeLeaf(c: {
  node: MimeNode
  content: Buffer
  attachment: boolean
  profile: Profile
  rule: (name: string, mode: Mode, code: ErrorCode, reason: string) => void
  texts: string[]
}): number {
  const { node, content, attachment, profile, rule, texts } = c
  const allowedType = (mime: string) => profile.attachmentTypes.includes(mime)
  let count = 0
  // #32: every leaf — attachment, inline part, text part, a part of an attached message — is
  // judged by what its bytes are, as the customer's mail program sniffs them, not only by what
  // it is called. A declared PDF or ZIP whose bytes are neither is judged as declared (and found
  // unreadable).
  const sniffed = sniff(content)
  const declared = attachment ? declaredFormats(node) : []
  const judged = sniffed.length ? sniffed : declared
  const part = node.path || '1'
  const name = node.filename || '(unnamed)'
  /** How a reply names the part, and what it really is when its declared type says otherwise. */
  const subject = (f?: Format) => {
    const who = attachment ? `attachment "${name}"` : `part ${part}`
    if (!f || !sniffed.includes(f) || declares(node.mime, node.filename, f)) return who
    return `${who}${attachment ? ` (part ${part})` : ''} is declared ${node.mime} but is ${f.label}, and`
  }
  if (profile.attachmentTypes.length) {
    const forbidden = sniffed.find((f) => !allowedType(f.mime))
    if (forbidden)
      rule(
        'attachment-type',
        'enforce',
        'EPOLICY_ATTACHMENT_TYPE',
        declares(node.mime, node.filename, forbidden)
          ? `${subject()} of type ${node.mime} is not allowed`
          : `${subject()}${attachment ? ` (part ${part})` : ''} is declared ${node.mime} but is ${forbidden.label} (${forbidden.mime}), which is not allowed`,
      )
    else if (attachment && !allowedType(node.mime) && !(sniffed.length && sniffed.every((f) => allowedType(f.mime))))
      rule('attachment-type', 'enforce', 'EPOLICY_ATTACHMENT_TYPE', `attachment "${name}" of type ${node.mime} is not allowed`)
  }
  for (const f of judged) {
    if (f.kind === 'pdf') {
      count++
      const j = pdfEncryption(content)
      if (j.verdict === 'unreadable')
        rule(
          'pdf-encryption',
          profile.pdfEncryption,
          'EPOLICY_PDF_UNREADABLE',
          `${subject(f)} cannot be read as a PDF (${j.reason.slice(0, 120)}), so its encryption cannot be checked`,
        )
      else if (j.verdict !== 'encrypted') rule('pdf-encryption', profile.pdfEncryption, 'EPOLICY_PDF_UNENCRYPTED', `${subject(f)} is not encrypted`)
    } else if (f.kind === 'zip') {
      const z = content.length >= 4 ? readZip(content) : { ok: false as const, reason: 'too short for a ZIP archive' }
      if (!z.ok)
        rule(
          'zip-encryption',
          profile.zipEncryption,
          'EPOLICY_ZIP_MALFORMED',
          `${subject(f)} is not a ZIP archive every reader reads alike (${z.reason.slice(0, 120)})`,
        )
      else {
        texts.push(...z.entries.map((e) => e.name))
        if (z.entries.some((e) => !e.encrypted && !e.name.endsWith('/')))
          rule('zip-encryption', profile.zipEncryption, 'EPOLICY_ZIP_UNENCRYPTED', `${subject(f)} has unencrypted entries`)
      }
    }
  }
  return count
}

/** M12: no unmasked national ID, nor anything matching a configured pattern, anywhere a person could read. */
function deidentify(
  texts: readonly string[],
  profile: Profile,
  patterns: readonly RegExp[],
  rule: (name: string, mode: Mode, code: ErrorCode, reason: string) => void,
): void {
  // #32: searched as a person reads it — other scripts' look-alike letters and digits too.
  const read = texts.map(reading)
  for (const r of read) {
    const ids = idsInReading(r)
    if (ids.length) {
      rule('deidentify', profile.deidentify, 'EPOLICY_UNMASKED_ID', `the message contains an unmasked national ID (${maskId(ids[0]!.id)})`)
      break
    }
  }
  for (const re of patterns) {
    const hit = (t: string) => ((re.lastIndex = 0), re.test(t))
    if (read.some((r) => hit(r.text) || (r.latin !== r.text && hit(r.latin)) || (r.early !== undefined && hit(r.early)))) {
      rule('deidentify', profile.deidentify, 'EPOLICY_UNMASKED_ID', 'the message contains data matching a configured sensitive pattern')
      break
    }
  }
}
