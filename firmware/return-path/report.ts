import { bareAddress, type Fields, fieldBlocks, typedValue, valueType } from './fields.ts'
import { readParts, type Part, type Parts } from './mime.ts'
import type { Failure } from './classify.ts'
import { fillFromNotice, header, noticeText, returnedHeader, textRecipients, type Get } from './notice.ts'
import { firstStatus, preferredStatus, replyCodeIn } from './scan.ts'
import { DIAGNOSTIC_LIMIT, MAX_RECIPIENTS, SYSTEM_LOCALS, type Action, type RecipientResult, type Report } from './types.ts'

export type { Action, Disposition, RecipientResult, Report, ReportKind } from './types.ts'

/**
 * What a report that came back to the box says (M8, M10, M11), whatever its
 * shape: an RFC 3464 DSN (or RFC 6533's internationalised one), an RFC 8098
 * MDN, an RFC 5965 complaint, an RFC 3834 auto-reply or vacation notice, or
 * a bounce in free text (qmail's QSBMF, old Exchange, Sendmail's transcript).
 * Auto-replies are reports of their own kind and never bounces.
 */
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
