import type { Config } from '../config/load.ts'
import { domainOf } from '../mime/address.ts'
import type { Envelope } from '../pipeline/handoff.ts'
import type { ReceiptWait } from '../spool/types.ts'

export type ReceiptRule = Config['returnPath']['readReceipts'][number]

/** What to do with an awaiting statement whose wait is over (M11). */
export type ReceiptStep = { step: 'second-send' } | { step: 'unread'; reason: string }

const MINUTE = 60_000

/** `2880` → `48 hours`, `90` → `90 minutes`, `1` → `1 minute`. */
const span = (minutes: number) => (minutes % 60 === 0 ? plural(minutes / 60, 'hour') : plural(minutes, 'minute'))
const plural = (n: number, unit: string) => `${n} ${unit}${n === 1 ? '' : 's'}`

/**
 * The securities rule of two sends and two days (M11; reference 000 7.(2)B:
 * 「於次月10日前得以電子郵件寄送2次，第2次寄送之2日內未取得客戶讀取電子郵件回條時，
 * 應以掛號方式補寄對帳單」): which statements it applies to, when each step is
 * due, and what the step is. Times come from the box's clock; the deadline is
 * the end of `deadlineDay` of the month of the first send, in the rule's time
 * zone (a statement for October goes out in November, before the 10th).
 */
export class ReadReceipts {
  readonly #config: Config

  constructor(config: Config) {
    this.#config = config
  }

  /** The return-path domain of a mail's sender domain, if it has one. */
  returnDomain(env: Pick<Envelope, 'mailFrom'>): string | undefined {
    const from = domainOf(env.mailFrom).toLowerCase()
    return this.#config.returnPath.domains.find((d) => d.from === from)?.returnPath
  }

  /**
   * The rule a mail falls under: a statement of a read-receipt class, to one
   * recipient (a receipt names one reader), from a domain with a return path.
   */
  ruleFor(env: Pick<Envelope, 'kind' | 'statementClass' | 'rcptTo' | 'mailFrom'>): ReceiptRule | undefined {
    if ((env.kind ?? 'statement') !== 'statement' || env.rcptTo.length !== 1 || !env.statementClass) return undefined
    if (!this.returnDomain(env)) return undefined
    return this.#config.returnPath.readReceipts.find((r) => r.statementClass === env.statementClass)
  }

  /** When the wait after a send ends. */
  waitUntil(rule: ReceiptRule, sentAt: number, sends: number): number {
    return sentAt + (sends === 1 ? rule.firstSendWaitMinutes : rule.secondSendWaitMinutes) * MINUTE
  }

  /** The end of the deadline day of the month of `firstSentAt` (ms, exclusive). */
  deadline(rule: ReceiptRule, firstSentAt: number): number {
    const [y, m] = localParts(firstSentAt, rule.timeZone)
    return localMidnight(y, m, rule.deadlineDay + 1, rule.timeZone)
  }

  /** The step due now for an awaiting statement. */
  step(rule: ReceiptRule, wait: ReceiptWait, now: number): ReceiptStep {
    if (wait.sends >= 2) return { step: 'unread', reason: `no read receipt within ${span(rule.secondSendWaitMinutes)} of the second send` }
    if (now < this.deadline(rule, wait.firstSentAt)) return { step: 'second-send' }
    return { step: 'unread', reason: `no read receipt, and the deadline (day ${rule.deadlineDay}) passed before a second send` }
  }
}

/** Year, month (1–12), day and the zone's offset from UTC (ms) of an instant in a time zone. */
function localParts(ms: number, timeZone: string): [number, number, number, number] {
  const f = new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
  })
  const p = Object.fromEntries(f.formatToParts(ms).map((x) => [x.type, x.value]))
  const asUtc = Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day), Number(p.hour), Number(p.minute), Number(p.second))
  return [Number(p.year), Number(p.month), Number(p.day), asUtc - Math.floor(ms / 1000) * 1000]
}

/** The instant of local midnight starting day `day` of month `month` (1–12; a day past the month's end rolls over). */
function localMidnight(year: number, month: number, day: number, timeZone: string): number {
  const guess = Date.UTC(year, month - 1, day)
  // Two rounds: the offset at the guess, then at the corrected instant (a DST change in between).
  const first = guess - localParts(guess, timeZone)[3]
  return guess - localParts(first, timeZone)[3]
}
