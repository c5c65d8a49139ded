/**
 * Why a recipient's mail failed, in Sisimai's vocabulary of bounce reasons
 * (userunknown, mailboxfull, blocked, …), from an SMTP reply or a DSN's status
 * and diagnostic (M8, M9). The firm's reports count bounces by reason, and a
 * hard bounce — the address itself is wrong — tells the firm to ask the
 * customer for a new one; any final failure owes a paper statement.
 *
 * The enhanced status code (RFC 3463) decides when it is specific; the text
 * decides between reasons one code is used for (5.7.1 is "blocked" from one
 * receiver and "spam" from another). Scans are linear: one pass per word list.
 */
export type BounceReason =
  | 'userunknown'
  | 'hostunknown'
  | 'hasmoved'
  | 'notaccept'
  | 'mailboxfull'
  | 'suspend'
  | 'exceedlimit'
  | 'mesgtoobig'
  | 'blocked'
  | 'spamdetected'
  | 'virusdetected'
  | 'policyviolation'
  | 'securityerror'
  | 'norelaying'
  | 'rejected'
  | 'filtered'
  | 'expired'
  | 'networkerror'
  | 'toomanyconn'
  | 'systemerror'
  | 'systemfull'
  | 'syntaxerror'
  | 'contenterror'
  | 'onhold'
  | 'undefined'

/** Permanent address errors (Sisimai's "hard"): the address will not work again. */
const HARD = new Set<BounceReason>(['userunknown', 'hostunknown', 'hasmoved', 'notaccept'])

const BY_STATUS: Record<string, BounceReason> = {
  '1.1': 'userunknown',
  '1.0': 'userunknown',
  '1.3': 'userunknown',
  '1.2': 'hostunknown',
  '1.6': 'hasmoved',
  '1.10': 'notaccept',
  '2.1': 'suspend',
  '2.2': 'mailboxfull',
  '2.3': 'exceedlimit',
  '2.4': 'systemerror',
  '3.1': 'systemfull',
  '3.2': 'notaccept',
  '3.4': 'mesgtoobig',
  '4.1': 'networkerror',
  '4.2': 'networkerror',
  '4.3': 'systemerror',
  '4.4': 'hostunknown',
  '4.6': 'networkerror',
  '4.7': 'expired',
  '5.0': 'syntaxerror',
  '5.1': 'syntaxerror',
  '5.2': 'syntaxerror',
  '5.4': 'syntaxerror',
  '6.0': 'contenterror',
  '7.1': 'rejected',
  '7.26': 'policyviolation',
}

/** Words that name a reason whatever the code says, most specific first. */
const BY_TEXT: readonly (readonly [BounceReason, readonly string[]])[] = [
  ['hostunknown', ['domain not found', 'host not found', 'no such domain', 'unrouteable']],
  [
    'userunknown',
    ['user unknown', 'unknown user', 'no such user', 'does not exist', 'no mailbox', 'mailbox unavailable', 'invalid recipient', 'recipient rejected'],
  ],
  ['mailboxfull', ['mailbox full', 'mailbox is full', 'over quota', 'quota exceeded', 'insufficient storage']],
  ['suspend', ['disabled', 'suspended', 'inactive', 'deactivated']],
  ['virusdetected', ['virus']],
  ['blocked', ['blocked', 'blacklist', 'block list', 'blocklist', 'spamhaus', 'reputation', 'poor reputation']],
  ['spamdetected', ['spam', 'unsolicited']],
  ['norelaying', ['relay']],
  ['toomanyconn', ['too many connections', 'rate limit']],
  ['mesgtoobig', ['too large', 'too big', 'size limit']],
]

/** The reason and whether it is hard, from a reply such as `550 5.1.1 <x@example.net>: no such user`. */
export function bounceReason(reply: string): { reason: BounceReason; hard: boolean; status: string | undefined } {
  const status = enhancedStatus(reply)
  const text = reply.toLowerCase()
  let reason: BounceReason | undefined
  for (const [r, words] of BY_TEXT) {
    if (words.some((w) => text.includes(w))) {
      reason = r
      break
    }
  }
  if (status) {
    const [, subject, detail] = status.split('.')
    const byCode = BY_STATUS[`${subject}.${detail}`]
    // A specific code wins over words, except where the code is a catch-all for policy (5.7.1).
    if (byCode && !(byCode === 'rejected' && reason) && !(byCode === 'userunknown' && detail === '0' && reason)) reason = byCode
    else if (!reason && subject === '7') reason = 'securityerror'
  }
  reason ??= 'undefined'
  return { reason, hard: HARD.has(reason), status }
}

/** The RFC 3463 status in a reply (`5.1.1`), or undefined. */
export function enhancedStatus(reply: string): string | undefined {
  // A fixed-width scan of each "x.y.z" start: linear, no backtracking over digit runs.
  for (let i = 0; i + 4 < reply.length; i++) {
    const c = reply.charCodeAt(i)
    if ((c !== 0x32 && c !== 0x34 && c !== 0x35) || reply[i + 1] !== '.') continue
    if (i > 0 && /[0-9.]/.test(reply[i - 1]!)) continue
    let j = i + 2
    const subjectStart = j
    while (j < reply.length && j - subjectStart < 3 && reply.charCodeAt(j) >= 0x30 && reply.charCodeAt(j) <= 0x39) j++
    if (j === subjectStart || reply[j] !== '.') continue
    const detailStart = ++j
    while (j < reply.length && j - detailStart < 3 && reply.charCodeAt(j) >= 0x30 && reply.charCodeAt(j) <= 0x39) j++
    if (j === detailStart || (j < reply.length && /[0-9.]/.test(reply[j]!))) continue
    return reply.slice(i, j)
  }
  return undefined
}
