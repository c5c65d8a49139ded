import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { ConfigError } from '../config/types.ts'
import { firstStatus, normalise } from './scan.ts'

/**
 * One classifier for every failure the box hears of (M8, M9): a reply during
 * delivery (`550 5.1.1 <a@b>: no such user`) and a DSN that arrives days later
 * are put in the same category by the same ordered rules. The rules are data
 * (`rules.json`, and a file of the firm's own tried first), so a category the
 * firm sees as "unclassified" can be given a rule without new firmware.
 *
 * A phrase is matched as a substring of the normalised text: one linear
 * `includes` per phrase, no regular expressions from a file.
 */
export interface Rule {
  category: string
  hard?: boolean
  /** RFC 3463 codes: `5.1.1`, `x.1.1` (any class), `5.7.*` (any detail), `4.*.*`. */
  status?: readonly string[]
  /** SMTP reply codes (RFC 5321 §4.2): `521`, `556`. */
  reply?: readonly string[]
  text?: readonly string[]
  /** The SMTP command the failure answered (`rcpt`, `data`, `mail`, `connect`), when the report says. */
  command?: readonly string[]
  /** The DSN action (`failed`, `delayed`). */
  action?: readonly string[]
  /** The type of the DSN's Diagnostic-Code (`smtp`, `x-unix`). */
  diagnosticType?: readonly string[]
  /** The RFC section, or the document whose reply texts `quotes` holds (#36: every built-in rule has one). */
  source?: string
  /** The texts `source` writes, each phrase of `text` part of one of them. */
  quotes?: readonly string[]
}

/** What is known of one failure. */
export interface Failure {
  /** RFC 3463 code as given, or ''. */
  status?: string
  /** The reply or diagnostic text. */
  text: string
  /** The SMTP reply code, or ''. */
  reply?: string
  command?: string
  action?: string
  /** RFC 3464 2.3.6: the Diagnostic-Code's type, when the failure came in a DSN. */
  diagnosticType?: string
}

export interface RuleSet {
  categories: Readonly<Record<string, string>>
  rules: readonly Rule[]
}

export interface Classification {
  category: string
  /** The address will not work again (the mailbox or the domain does not exist). */
  hard: boolean
  /** The status as given, or the class of the reply code (`5.0.0`), or '' when neither was there. */
  status: string
}

const BUILT_IN = fileURLToPath(new URL('./rules.json', import.meta.url))

/** Reads a rules file and checks its shape; a bad file is a clear error naming the rule. */
export function loadRules(path: string, known?: RuleSet): RuleSet {
  let doc: unknown
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'))
  } catch (e) {
    throw new ConfigError('returnPath.rulesFile', `cannot read the bounce rules file ${path}: ${(e as Error).message}`)
  }
  const d = doc as { categories?: Record<string, string>; rules?: unknown }
  const categories = { ...(known?.categories ?? {}), ...(d.categories ?? {}) }
  if (!Array.isArray(d.rules)) throw new ConfigError('returnPath.rulesFile', `${path}: "rules" must be a list`)
  const rules = d.rules.map((r: Rule, i: number) => {
    const where = `${path}: rule ${i + 1}`
    if (typeof r?.category !== 'string' || !(r.category in categories))
      throw new ConfigError('returnPath.rulesFile', `${where}: unknown category ${JSON.stringify(r?.category)}`)
    if (!r.status && !r.reply && !r.text && !r.diagnosticType)
      throw new ConfigError('returnPath.rulesFile', `${where}: needs "status", "reply", "text" or "diagnosticType"`)
    for (const s of r.status ?? [])
      if (!/^[245x]\.(\d{1,3}|\*)\.(\d{1,3}|\*)$/.test(s)) throw new ConfigError('returnPath.rulesFile', `${where}: bad status ${JSON.stringify(s)}`)
    for (const c of r.reply ?? []) if (!/^[245]\d\d$/.test(c)) throw new ConfigError('returnPath.rulesFile', `${where}: bad reply code ${JSON.stringify(c)}`)
    for (const k of ['command', 'action', 'diagnosticType'] as const)
      if (r[k] !== undefined && !(Array.isArray(r[k]) && r[k].every((v) => typeof v === 'string')))
        throw new ConfigError('returnPath.rulesFile', `${where}: "${k}" must be a list of words`)
    for (const t of r.text ?? [])
      if (typeof t !== 'string' || normalise(t) !== t || t === '')
        throw new ConfigError('returnPath.rulesFile', `${where}: a phrase must be lower case with single spaces: ${JSON.stringify(t)}`)
    return {
      category: r.category,
      hard: r.hard === true,
      status: r.status,
      reply: r.reply,
      text: r.text,
      command: r.command,
      action: r.action,
      diagnosticType: r.diagnosticType,
      source: typeof r.source === 'string' ? r.source : undefined,
      quotes: Array.isArray(r.quotes) ? r.quotes.filter((q) => typeof q === 'string') : undefined,
    }
  })
  return { categories, rules }
}

let builtIn: RuleSet | undefined
/** The rules shipped with the firmware. */
export const builtInRules = (): RuleSet => (builtIn ??= loadRules(BUILT_IN))

/** The firm's rules (if any) before the built-in ones. */
export function rulesWith(firmFile: string | undefined): RuleSet {
  const base = builtInRules()
  if (!firmFile) return base
  const firm = loadRules(firmFile, base)
  return { categories: firm.categories, rules: [...firm.rules, ...base.rules] }
}

function statusMatches(pattern: string, status: string): boolean {
  if (!status) return false
  const p = pattern.split('.')
  const s = status.split('.')
  return p.every((part, i) => part === '*' || (i === 0 && part === 'x') || part === s[i])
}

export class Classifier {
  readonly rules: RuleSet

  constructor(rules: RuleSet = builtInRules()) {
    this.rules = rules
  }

  /**
   * The category of a failure from its status code (if known) and its text:
   * an SMTP reply, a DSN's Diagnostic-Code, or the sentence of a notice.
   */
  classify(f: Failure): Classification {
    const t = normalise(f.text)
    const reply = f.reply || (/^\s*([245]\d\d)[\s-]/.exec(f.text)?.[1] ?? '')
    const status = f.status || firstStatus(f.text) || (reply ? `${reply[0]}.0.0` : '')
    const command = f.command ?? commandIn(t)
    for (const rule of this.rules.rules) {
      if (rule.command && !rule.command.includes(command)) continue
      if (rule.action && !rule.action.includes(f.action ?? '')) continue
      if (rule.diagnosticType && !rule.diagnosticType.includes(f.diagnosticType ?? '')) continue
      if (rule.status && !rule.status.some((p) => statusMatches(p, status))) continue
      if (rule.reply && !rule.reply.includes(reply)) continue
      if (rule.text && !rule.text.some((phrase) => t.includes(phrase))) continue
      // A transient code, or a report that the mail is only delayed, never says the address is dead (#36).
      const hard = rule.hard === true && status[0] !== '4' && reply[0] !== '4' && f.action !== 'delayed'
      return { category: rule.category, hard, status }
    }
    // Unclassified is conservative (#36): soft, and during delivery retried until the mail expires.
    return { category: 'unclassified', hard: false, status }
  }
}

/** Replies that say which command they answered, in the words of common MTAs' notices. */
const COMMANDS: readonly (readonly [string, readonly string[]])[] = [
  ['data', ['in reply to end of data', 'in reply to data', '>>> data', 'after end of data', 'after data', 'final data', 'data command', 'smtp command data']],
  ['rcpt', ['in reply to rcpt', '>>> rcpt to', 'after rcpt', 'our rcpt to', 'rcpt to command', 'rcpt command']],
  ['mail', ['in reply to mail from', '>>> mail from', 'after mail from', 'mail from command']],
  ['connect', ['after initial connection', 'while connected to', 'greeting']],
]

/** The SMTP command a normalised notice says the failure answered, or ''. */
export function commandIn(normalised: string): string {
  for (const [command, phrases] of COMMANDS) if (phrases.some((p) => normalised.includes(p))) return command
  return ''
}
