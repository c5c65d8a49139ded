import type { Config } from '../config/load.ts'
import type { ErrorCode } from '../errors.ts'
import { domainOf } from '../mime/address.ts'
import { factsOf, type MessageFacts } from '../pipeline/facts.ts'
import { htmlText } from '../mime/html.ts'
import { field } from '../mime/header.ts'
import { decodedBody, decodedText, isAttachment, parseMessage, walk } from '../mime/tree.ts'
import { decodeWords } from '../mime/words.ts'
import { compilePattern } from '../config/patterns.ts'
import { pdfEncryption } from './pdf.ts'
import { findTaiwanIds, maskId, readable } from '../pii/taiwan-id.ts'
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
    if (TEXTUAL(node.mime)) {
      const text = decodedText(buf, node)
      if (node.mime === 'text/html') {
        const h = htmlText(text)
        texts.push(h.source, h.joined, h.spaced)
      } else texts.push(text)
    }
    if (!attachment) continue
    const content = decodedBody(buf, node)
    const name = node.filename || '(unnamed)'
    // Judged by what the content is, not only by what it is called: an unencrypted PDF sent as
    // application/octet-stream named statement.dat is still a PDF to the customer's reader.
    const declaredPdf = node.mime === 'application/pdf' || /\.pdf$/i.test(node.filename)
    const declaredZip = node.mime === 'application/zip' || node.mime === 'application/x-zip-compressed' || /\.zip$/i.test(node.filename)
    const zipMagic = content.length >= 4 && content.readUInt32LE(0) === 0x04034b50
    const isZip = declaredZip || (!declaredPdf && zipMagic)
    const isPdf = declaredPdf || (!isZip && content.subarray(0, 1024).includes('%PDF-'))
    if (profile.attachmentTypes.length && !profile.attachmentTypes.includes(node.mime) && !(isPdf && profile.attachmentTypes.includes('application/pdf'))) {
      rule('attachment-type', 'enforce', 'EPOLICY_ATTACHMENT_TYPE', `attachment "${name}" of type ${node.mime} is not allowed`)
    }
    if (isPdf) {
      pdfs++
      const j = pdfEncryption(content)
      if (j.verdict === 'unreadable')
        rule(
          'pdf-encryption',
          profile.pdfEncryption,
          'EPOLICY_PDF_UNREADABLE',
          `attachment "${name}" cannot be read as a PDF (${j.reason.slice(0, 120)}), so its encryption cannot be checked`,
        )
      else if (j.verdict !== 'encrypted') rule('pdf-encryption', profile.pdfEncryption, 'EPOLICY_PDF_UNENCRYPTED', `attachment "${name}" is not encrypted`)
    } else if (isZip) {
      const z = content.length >= 4 ? readZip(content) : { ok: false as const, reason: 'too short for a ZIP archive' }
      if (!z.ok)
        rule(
          'zip-encryption',
          profile.zipEncryption,
          'EPOLICY_ZIP_MALFORMED',
          `attachment "${name}" is not a ZIP archive every reader reads alike (${z.reason.slice(0, 120)})`,
        )
      else {
        texts.push(...z.entries.map((e) => e.name))
        if (z.entries.some((e) => !e.encrypted && !e.name.endsWith('/')))
          rule('zip-encryption', profile.zipEncryption, 'EPOLICY_ZIP_UNENCRYPTED', `attachment "${name}" has unencrypted entries`)
      }
    }
  }
  if (profile.requirePdf && pdfs === 0) rule('pdf-required', 'enforce', 'EPOLICY_PDF_MISSING', 'the statement has no PDF attachment')

  const readableTexts = texts.map(readable)
  for (const t of readableTexts) {
    const ids = findTaiwanIds(t)
    if (ids.length) {
      rule('deidentify', profile.deidentify, 'EPOLICY_UNMASKED_ID', `the message contains an unmasked national ID (${maskId(ids[0]!)})`)
      break
    }
  }
  for (const re of patterns(profile)) {
    if (readableTexts.some((t) => ((re.lastIndex = 0), re.test(t)))) {
      rule('deidentify', profile.deidentify, 'EPOLICY_UNMASKED_ID', 'the message contains data matching a configured sensitive pattern')
      break
    }
  }
  return { facts, profile: profile.name, hits }
}
