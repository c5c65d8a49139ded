import { bareAddress, type Fields, fieldBlocks, typedValue, valueType } from './fields.ts'
import { readParts, type Part, type Parts, unfold } from './mime.ts'
import { commandIn, type Failure } from './classify.ts'
import { addressesIn, firstStatus, normalise, replyCodeIn } from './scan.ts'

/**
 * What a report that came back to the box says (M8, M10, M11), whatever its
 * shape: an RFC 3464 DSN (or RFC 6533's internationalised one), an RFC 8098
 * MDN, an RFC 5965 complaint, an RFC 3834 auto-reply or vacation notice, or
 * a bounce in free text (qmail's QSBMF, old Exchange, Sendmail's transcript).
 * Auto-replies are reports of their own kind and never bounces.
 */
export type ReportKind = 'dsn' | 'mdn' | 'feedback' | 'auto-reply' | 'unknown'

export type Action = 'failed' | 'delayed' | 'delivered' | 'relayed' | 'expanded'

export interface RecipientResult {
  /** The recipient as the report names it ('' when it names none). */
  address: string
  action: Action
  /** RFC 3463 code as given ('' when none). */
  status: string
  /** The SMTP reply code in the diagnostic ('' when none). */
  reply: string
  /** The receiver's words about this recipient (Diagnostic-Code, or the notice's sentence), at most 1000 characters. */
  diagnostic: string
  remoteMta: string
  /** The SMTP command the failure answered (`rcpt`, `data`, …) when the report says, else ''. */
  command: string
  /** The type of the DSN's Diagnostic-Code (`smtp`; `x-unix` for a local delivery program's exit), when it has one. */
  diagnosticType?: string
}

export interface Disposition {
  /** RFC 8098 3.2.6.2: displayed, deleted, dispatched, processed (and the obsolete denied, failed). */
  type: string
  /** automatic-action or manual-action. */
  action: 'automatic' | 'manual'
}

export interface Report {
  kind: ReportKind
  recipients: RecipientResult[]
  disposition?: Disposition
  feedbackType?: string
  /** The Message-ID of the message reported on (returned headers, or the MDN's Original-Message-ID), without brackets. */
  originalMessageId: string
  /** Who the report came from and its subject, for the audit record. */
  from: string
  subject: string
}

const DIAGNOSTIC_LIMIT = 1000
/** More recipients than one statement has; the box sends each recipient its own transaction anyway. */
const MAX_RECIPIENTS = 100
const SYSTEM_LOCALS = new Set(['mailer-daemon', 'postmaster', 'mailerdaemon', 'mail-daemon', 'root', 'abuse', 'noreply', 'no-reply', 'daemon', 'nobody'])
const NO_DETAIL = { status: '', reply: '', diagnostic: '', remoteMta: '', command: '' }
const ACTIONS = new Set<Action>(['failed', 'delayed', 'delivered', 'relayed', 'expanded'])

/** What the classifier is told of a recipient's failure: the same fields wherever it is classified. */
export function failureOf(r: RecipientResult): Failure {
  return { status: r.status, text: r.diagnostic, reply: r.reply, command: r.command, action: r.action, diagnosticType: r.diagnosticType }
}

/** Reads a report. Never throws on what the sender wrote; what cannot be read is `unknown` with no recipients. */
export async function parseReport(raw: Buffer): Promise<Report> {
  return reportOf(await readParts(raw))
}

export function reportOf(p: Parts): Report {
  const top = header(p.headers)
  const contentType = top('content-type').toLowerCase()
  const from = top('from')
  const subject = top('subject')
  const base = { from, subject, originalMessageId: originalMessageId(p) }

  const mdn = p.parts.find((x) => x.type === 'message/disposition-notification' || x.type === 'message/global-disposition-notification')
  if (mdn || contentType.includes('disposition-notification')) return { ...base, ...mdnOf(mdn), kind: 'mdn' }

  const fb = p.parts.find((x) => x.type === 'message/feedback-report')
  if (fb || contentType.includes('feedback-report')) return { ...base, ...feedbackOf(fb, p), kind: 'feedback' }
  // Microsoft's Junk Mail Reporting Program sends complaints without RFC 5965's report part: the
  // message the customer marked as junk, with the recipient in a header Outlook.com adds.
  const jmrp = returnedHeader(p, 'x-hmxmroriginalrecipient')
  if (jmrp) {
    const address = bareAddress(jmrp)
    return { ...base, kind: 'feedback', feedbackType: 'abuse', recipients: [{ ...NO_DETAIL, address, action: 'delivered' }] }
  }

  const status = p.parts.filter((x) => x.type === 'message/delivery-status' || x.type === 'message/global-delivery-status')
  let recipients = status.flatMap((x) => dsnRecipients(x.text)).slice(0, MAX_RECIPIENTS)
  // Some servers write the RFC 3464 fields into the notice itself.
  if (recipients.length === 0)
    recipients = p.parts
      .filter((x) => x.type === 'text/plain' && !x.returned)
      .flatMap((x) => dsnRecipients(x.text))
      .slice(0, MAX_RECIPIENTS)
  const notice = noticeText(p)
  if (recipients.length === 0 && isAutoReply(top, subject, from)) return { ...base, kind: 'auto-reply', recipients: [] }
  if (recipients.length === 0) recipients = textRecipients(notice, p)
  fillFromNotice(recipients, notice)
  return { ...base, kind: recipients.length ? 'dsn' : 'unknown', recipients }
}

type Get = (name: string) => string
const header = (h: Parts['headers']): Get => {
  const m = new Map<string, string>()
  for (const [k, v] of h) if (!m.has(k)) m.set(k, v)
  return (name) => m.get(name) ?? ''
}

function dsnRecipients(text: string): RecipientResult[] {
  const out: RecipientResult[] = []
  for (const b of fieldBlocks(text)) {
    const rcpt = b.get('final-recipient') ?? b.get('original-recipient') ?? b.get('x-actual-recipient')
    if (rcpt === undefined || !(b.has('action') || b.has('status'))) continue
    const said = (b.get('action') ?? 'failed').toLowerCase().split(/[\s(]/, 1)[0]!
    // `deliverable` (some MTAs' answer to a DSN request for a verification) is a delivery.
    const action = (said === 'deliverable' ? 'delivered' : said) as Action
    const diagnostic = typedValue(b.get('diagnostic-code')).slice(0, DIAGNOSTIC_LIMIT)
    out.push({
      address: bareAddress(typedValue(rcpt)),
      action: ACTIONS.has(action) ? action : 'failed',
      status: preferredStatus(firstStatus(b.get('status') ?? ''), firstStatus(diagnostic), replyCodeIn(diagnostic)),
      reply: replyCodeIn(diagnostic),
      diagnostic,
      remoteMta: typedValue(b.get('remote-mta')),
      command: '',
      diagnosticType: valueType(b.get('diagnostic-code')),
    })
  }
  return out
}

/**
 * Which code describes the failure, when the Status field and the receiver's reply each give one:
 * the one of the reply code's class when they differ in class; the reply's own code when the field
 * is vaguer (`5.0.0`, `5.1.0`) or is X.4.7, which RFC 3463 3.5 asks to be used only when "the code
 * for the actual problem found when delivery was attempted" cannot be given; otherwise the field.
 */
function preferredStatus(field: string, diagnostic: string, reply = ''): string {
  if (!field || field === diagnostic) return field || diagnostic
  if (!diagnostic) return field
  if (field[0] !== diagnostic[0] && reply) {
    if (reply[0] === diagnostic[0]) return diagnostic
    if (reply[0] === field[0]) return field
  }
  const [, fieldSubject, fieldDetail] = field.split('.')
  const [, subject, detail] = diagnostic.split('.')
  if (fieldSubject === '0' && fieldDetail === '0') return subject === '0' && detail === '0' ? field : diagnostic
  if (fieldDetail === '0' && detail !== '0' && subject !== '0') return diagnostic
  if (fieldSubject === '4' && fieldDetail === '7') return diagnostic
  return field
}

function mdnOf(part: Part | undefined): Pick<Report, 'recipients' | 'disposition'> & { originalMessageId?: string } {
  const f: Fields = new Map(fieldBlocks(part?.text ?? '').flatMap((b) => [...b]))
  // Disposition: automatic-action/MDN-sent-automatically; displayed/error
  const d = (f.get('disposition') ?? '').toLowerCase()
  const semi = d.indexOf(';')
  const mode = semi >= 0 ? d.slice(0, semi) : d
  const type = (semi >= 0 ? d.slice(semi + 1) : '').trim().split(/[/\s]/, 1)[0] ?? ''
  const rcpt = bareAddress(typedValue(f.get('final-recipient') ?? f.get('original-recipient')))
  const id = messageIdOf(f.get('original-message-id') ?? '')
  return {
    recipients: rcpt ? [{ address: rcpt, action: 'delivered', status: '', reply: '', diagnostic: '', remoteMta: '', command: '' }] : [],
    disposition: { type, action: mode.startsWith('manual') ? 'manual' : 'automatic' },
    ...(id ? { originalMessageId: id } : {}),
  }
}

function feedbackOf(part: Part | undefined, p: Parts): Pick<Report, 'recipients' | 'feedbackType'> {
  const f: Fields = new Map(fieldBlocks(part?.text ?? '').flatMap((b) => [...b]))
  const rcpt = f.get('original-rcpt-to') ?? f.get('removal-recipient') ?? returnedHeader(p, 'to')
  const address = bareAddress(typedValue(rcpt ?? ''))
  return {
    feedbackType: (f.get('feedback-type') ?? 'abuse').toLowerCase(),
    recipients: address ? [{ address, action: 'delivered', status: '', reply: '', diagnostic: '', remoteMta: '', command: '' }] : [],
  }
}

/** RFC 3834 5: Auto-Submitted: auto-replied, and the headers that older responders set instead. */
function isAutoReply(top: Get, subject: string, from: string): boolean {
  const auto = top('auto-submitted').toLowerCase()
  const local = bareAddress(from).split('@')[0]?.toLowerCase() ?? ''
  if (SYSTEM_LOCALS.has(local)) return false
  if (auto.startsWith('auto-replied')) return true
  if (top('x-autoreply') || top('x-autorespond') || top('x-autoresponder')) return true
  const prec = top('precedence').toLowerCase()
  if (prec === 'auto_reply') return true
  const s = subject.toLowerCase()
  return [
    'auto:',
    'automatic reply',
    'auto reply',
    'autoreply',
    'auto-reply',
    'out of office',
    'out of the office',
    'vacation',
    '自動回覆',
    '自动回复',
    '不在',
  ].some((w) => s.startsWith(w) || s.includes(` ${w}`))
}

/**
 * The notice a person was meant to read: the report's own text parts, and for
 * a one-part bounce the body up to where the returned message begins.
 */
function noticeText(p: Parts): string {
  const texts = p.parts.filter((x) => !x.returned && (x.type === 'text/plain' || x.type === 'text/html') && x.text)
  const plain = texts.filter((x) => x.type === 'text/plain')
  const text = (plain.length ? plain : texts).map((x) => x.text).join('\n')
  return text.slice(0, returnedStart(text))
}

const RETURNED_MARKERS = ['received:', 'return-path:', 'message-id:', 'dkim-signature:', 'x-original-to:', 'delivered-to:']

/** Where a quoted original message starts in a one-part notice: its first header-looking line that is followed by another. */
function returnedStart(text: string): number {
  let at = 0
  for (;;) {
    const nl = text.indexOf('\n', at)
    const line = text.slice(at, nl < 0 ? text.length : nl).toLowerCase()
    if (RETURNED_MARKERS.some((m) => line.startsWith(m))) return at
    if (nl < 0) return text.length
    at = nl + 1
  }
}

/** The recipients a free-text notice names: its addresses that are not the report's own parties or system mailboxes. */
function textRecipients(notice: string, p: Parts): RecipientResult[] {
  const top = header(p.headers)
  const own = new Set(
    ['from', 'to', 'reply-to', 'return-path', 'sender']
      .flatMap((h) => addressesIn(top(h)))
      .concat(['from', 'sender', 'return-path'].flatMap((h) => addressesIn(returnedHeader(p, h) ?? '')))
      .map((a) => a.value.toLowerCase()),
  )
  // Tried in tiers: a notice may name only a postmaster address as the failed one, and anonymised or
  // forwarded reports may repeat the recipient in their own headers.
  const failed = addressesIn(top('x-failed-recipients')).slice(0, MAX_RECIPIENTS)
  const all = failed.length ? mentions(notice, failed) : addressesIn(notice)
  const reportFrom = new Set(addressesIn(top('from')).map((a) => a.value.toLowerCase()))
  const system = (v: string) => SYSTEM_LOCALS.has(v.split('@')[0]!)
  // Exim names the address an alias or forward was expanded from under the one that failed
  // (`a@b\n    (generated from c@d)`): c@d is not a second recipient.
  const expandedFrom = (a: { at: number }) => /generated from\s*$/i.test(notice.slice(Math.max(0, a.at - 30), a.at))
  let found = all.filter((a) => !own.has(a.value.toLowerCase()) && !system(a.value.toLowerCase()) && !expandedFrom(a))
  if (found.length === 0) found = all.filter((a) => !own.has(a.value.toLowerCase()))
  if (found.length === 0) found = all.filter((a) => !reportFrom.has(a.value.toLowerCase()) && !system(a.value.toLowerCase()))
  const named = new Set(found.map((f) => f.value.toLowerCase()))
  const noticeReply = replyLine(notice)
  const seen = new Set<string>()
  const out: RecipientResult[] = []
  for (const a of found) {
    const key = a.value.toLowerCase()
    if (seen.has(key)) continue
    seen.add(key)
    if (out.length === MAX_RECIPIENTS) break
    // The notice's words about this address: from its first mention to the next mention of another
    // recipient (at most 2000 characters), and the words before it back to the previous one.
    const other = (x: { value: string }) => x.value.toLowerCase() !== key && named.has(x.value.toLowerCase())
    const after = a.at + a.value.length
    const next = addressesIn(notice.slice(after, a.at + 2000)).find(other)
    const segment = notice.slice(a.at, next ? after + next.at : a.at + 2000)
    const from = Math.max(0, a.at - 500)
    const previous = addressesIn(notice.slice(from, a.at)).filter(other).at(-1)
    out.push(textResult(a.value, segment, leadIn(notice, a.at, previous ? from + previous.at + previous.value.length : undefined), noticeReply))
  }
  if (out.length === 0) {
    const to = addressesIn(returnedHeader(p, 'to') ?? quotedHeader(p, 'to') ?? '')[0]
    if (to) out.push(textResult(to.value, notice))
  }
  return out
}

/** Where the notice names each of the addresses a header lists (X-Failed-Recipients); the header's order and set win. */
function mentions(notice: string, listed: { value: string }[]): { value: string; at: number }[] {
  const lower = notice.toLowerCase()
  return listed.map((a) => ({ value: a.value, at: Math.max(0, lower.indexOf(a.value.toLowerCase())) }))
}

/**
 * The words before an address in its own paragraph, when no other address is among them: many
 * notices give the reason first (`User mailbox exceeds allowed size: a@b`, Lotus Notes' reason
 * line above the address).
 */
function leadIn(notice: string, at: number, previous: number | undefined): string {
  const from = Math.max(0, at - 500, previous ?? 0)
  const before = notice.slice(from, at).replace(/\r/g, '')
  const lines = before.split('\n')
  let start = lines.length - 1
  while (start > 0 && lines[start - 1]!.trim() !== '') start--
  // The address's own brackets or quotes are not words before it.
  const joined = lines.slice(start).join(' ').trim()
  let end = joined.length
  while (end > 0 && '<("\'[ \t'.includes(joined[end - 1]!)) end--
  const words = joined.slice(0, end)
  if (!/\p{L}/u.test(words)) return ''
  return previous !== undefined && previous >= from && start === 0 ? '' : words
}

/**
 * A notice that gives the receiver's reply once, apart from the addresses (`Error message below:
 * 550 - Requested action not taken: no such user here`, then the message's details with the
 * recipient): that reply is the recipient's when its own words carry no code.
 */
function textResult(address: string, segment: string, lead = '', noticeReply = ''): RecipientResult {
  const after = segment.slice(address.length).replace(/^[>:\s]+/, '')
  const own = lead ? `${lead} ${after}` : after
  const borrowed = !firstStatus(own) && !replyCodeIn(own) && noticeReply
  const diagnostic = oneLine(borrowed ? `${noticeReply} ${own}` : own).slice(0, DIAGNOSTIC_LIMIT)
  return {
    address,
    action: 'failed',
    status: firstStatus(borrowed ? noticeReply : segment),
    reply: replyCodeIn(borrowed ? noticeReply : segment),
    diagnostic,
    remoteMta: '',
    command: commandIn(normalise(segment)),
  }
}

/** A recipient without a code or words gets what the notice says as a whole. */
function fillFromNotice(recipients: RecipientResult[], notice: string): void {
  if (recipients.some((r) => !r.diagnostic)) {
    // A DSN without a Diagnostic-Code often names the recipient in its notice with the receiver's
    // reply (OpenSMTPD: `a@b: 550 5.1.1 …`): the recipient's own line is better than the whole notice.
    const mentions = addressesIn(notice)
    const lower = mentions.map((m) => m.value.toLowerCase())
    for (const r of recipients) {
      if (r.diagnostic || !r.address) continue
      const at = lower.indexOf(r.address.toLowerCase())
      if (at < 0) continue
      const end = notice.indexOf('\n', mentions[at]!.at)
      const line = notice.slice(mentions[at]!.at, end < 0 ? notice.length : end)
      const own = line.slice(r.address.length).replace(/^[>:\s]+/, '')
      if (!firstStatus(own) && !replyCodeIn(own)) continue
      r.diagnostic = oneLine(own).slice(0, DIAGNOSTIC_LIMIT)
      r.status = preferredStatus(r.status, firstStatus(own), replyCodeIn(own))
      r.reply ||= replyCodeIn(own)
    }
  }
  // Only the recipient's own words say which command failed: a notice's transcript covers the whole session.
  // A DSN's Diagnostic-Code rarely says it; the notice's paragraph about the recipient often does
  // (Postfix: `<a@b>: host mx said: 550 … (in reply to RCPT TO command)`).
  for (const r of recipients) r.command ||= commandIn(normalise(r.diagnostic)) || commandIn(normalise(paragraphAbout(notice, r.address)))
  if (!recipients.some((r) => !r.status || !r.diagnostic)) return
  const status = firstStatus(notice)
  const reply = replyCodeIn(notice)
  const words = oneLine(notice).slice(0, DIAGNOSTIC_LIMIT * 4)
  for (const r of recipients) {
    if (!r.diagnostic) r.diagnostic = words
    if (!r.status && r.action === 'failed') r.status = status
    if (!r.reply) r.reply = reply
  }
}

/** The notice's paragraph that first names the address: from the mention to the next blank line, at most 1000 characters. */
function paragraphAbout(notice: string, address: string): string {
  if (!address) return ''
  const at = notice.toLowerCase().indexOf(address.toLowerCase())
  if (at < 0) return ''
  const text = notice.slice(at, at + DIAGNOSTIC_LIMIT).replace(/\r/g, '')
  const blank = text.search(/\n[ \t]*\n/)
  return blank < 0 ? text : text.slice(0, blank)
}

/** The notice's first line that starts with an SMTP reply code (`550 …`, `550-5.1.1 …`), or ''. */
function replyLine(notice: string): string {
  let at = 0
  while (at < notice.length) {
    const nl = notice.indexOf('\n', at)
    const line = notice.slice(at, nl < 0 ? notice.length : nl).trim()
    if (line.length > 4 && replyCodeIn(line.slice(0, 4)) && /[\p{L}]/u.test(line)) return line.slice(0, DIAGNOSTIC_LIMIT)
    if (nl < 0) break
    at = nl + 1
  }
  return ''
}

function oneLine(s: string): string {
  return unfold(s)
}

function returnedHeader(p: Parts, name: string): string | undefined {
  for (const part of p.parts) {
    if (!part.returned) continue
    const f = fieldBlocks(part.text)[0]
    const v = f?.get(name)
    if (v) return v
  }
  return undefined
}

/** A header of the original message that a one-part bounce quotes after its notice. */
function quotedHeader(p: Parts, name: string): string | undefined {
  for (const part of p.parts) {
    if (part.returned || part.type !== 'text/plain') continue
    const at = returnedStart(part.text)
    if (at >= part.text.length) continue
    const v = fieldBlocks(part.text.slice(at, at + 64 * 1024))[0]?.get(name)
    if (v) return v
  }
  return undefined
}

function messageIdOf(v: string): string {
  const lt = v.indexOf('<')
  const gt = v.indexOf('>', lt)
  return (lt >= 0 && gt > lt ? v.slice(lt + 1, gt) : v).trim()
}

function originalMessageId(p: Parts): string {
  const fromReturned = returnedHeader(p, 'message-id')
  if (fromReturned) return messageIdOf(fromReturned)
  // A one-part bounce quotes the original headers in its body.
  for (const part of p.parts) {
    if (part.returned || part.type !== 'text/plain') continue
    const at = part.text.toLowerCase().indexOf('\nmessage-id:')
    if (at >= 0) return messageIdOf(part.text.slice(at + 12, part.text.indexOf('\n', at + 12) >>> 0))
  }
  return ''
}
