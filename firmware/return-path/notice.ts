import { fieldBlocks } from './fields.ts'
import { type Parts, unfold } from './mime.ts'
import { commandIn } from './classify.ts'
import { addressesIn, firstStatus, normalise, preferredStatus, replyCodeIn } from './scan.ts'
import { DIAGNOSTIC_LIMIT, MAX_RECIPIENTS, SYSTEM_LOCALS, type RecipientResult } from './types.ts'

/**
 * Bounces in free text (qmail's QSBMF, Sendmail's transcripts, Exim, old
 * Exchange, Lotus Notes, carriers' own notices): the notice a person was meant
 * to read, the failed addresses in it (or `X-Failed-Recipients`) each with its
 * own words, code and command, and what a DSN's fields left out filled in from
 * the notice's paragraph about the recipient. Every scan is linear.
 */

export type Get = (name: string) => string
export const header = (h: Parts['headers']): Get => {
  const m = new Map<string, string>()
  for (const [k, v] of h) if (!m.has(k)) m.set(k, v)
  return (name) => m.get(name) ?? ''
}

/**
 * The notice a person was meant to read: the report's own text parts, and for
 * a one-part bounce the body up to where the returned message begins.
 */
export function noticeText(p: Parts): string {
  const texts = p.parts.filter((x) => !x.returned && (x.type === 'text/plain' || x.type === 'text/html') && x.text)
  const plain = texts.filter((x) => x.type === 'text/plain')
  const text = (plain.length ? plain : texts).map((x) => x.text).join('\n')
  return text.slice(0, returnedStart(text))
}

const RETURNED_MARKERS = ['received:', 'return-path:', 'message-id:', 'dkim-signature:', 'x-original-to:', 'delivered-to:']

/** Where a quoted original message starts in a one-part notice: its first header-looking line that is followed by another. */
export function returnedStart(text: string): number {
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
export function textRecipients(notice: string, p: Parts): RecipientResult[] {
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
  // A notice that says where its list of failed recipients starts (`did not reach the following
  // recipient(s):`) may name others before it: the original's To in a summary, the sender.
  // Those others still end the words of the recipient before them.
  const named = new Set(found.map((f) => f.value.toLowerCase()))
  const listAt = listStart(notice)
  if (listAt >= 0 && found.some((a) => a.at > listAt)) found = found.filter((a) => a.at > listAt)
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
export function fillFromNotice(recipients: RecipientResult[], notice: string): void {
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

/** Words that introduce the list of failed recipients in common notices. */
const LIST_MARKERS = [
  'following recipient',
  'following address',
  'following destination',
  'could not be delivered to:',
  'delivery has failed to these recipients',
  'delivery to the following',
]

/** Where the notice's list of failed recipients starts (after its first marker), or -1. */
function listStart(notice: string): number {
  const lower = notice.toLowerCase()
  let at = -1
  for (const m of LIST_MARKERS) {
    const i = lower.indexOf(m)
    if (i >= 0 && (at < 0 || i < at)) at = i + m.length
  }
  return at
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

export function returnedHeader(p: Parts, name: string): string | undefined {
  for (const part of p.parts) {
    if (!part.returned) continue
    const f = fieldBlocks(part.text)[0]
    const v = f?.get(name)
    if (v) return v
  }
  return undefined
}

/** A header of the original message that a one-part bounce quotes after its notice. */
export function quotedHeader(p: Parts, name: string): string | undefined {
  for (const part of p.parts) {
    if (part.returned || part.type !== 'text/plain') continue
    const at = returnedStart(part.text)
    if (at >= part.text.length) continue
    const v = fieldBlocks(part.text.slice(at, at + 64 * 1024))[0]?.get(name)
    if (v) return v
  }
  return undefined
}
