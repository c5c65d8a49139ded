import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Classifier } from '../../firmware/return-path/classify.ts'
import { failureOf, parseReport, type Report } from '../../firmware/return-path/report.ts'

/**
 * The labelled bounce corpus (#36; M8, M9, M11): where it is, which half a file
 * belongs to, and how the parser and classifier agree with its labels. The
 * labels are Sisimai's reason names, not an independent truth; docs/return-path.md's
 * table maps our categories to them.
 */

/** One line, naming both places, for a checkout without the corpus. */
export const CORPUS_MISSING = 'the bounce corpus is not found: neither $SG_BOUNCE_CORPUS nor ../shared/corpus/bounces next to the checkout holds expected.json'

/** The corpus folder: `$SG_BOUNCE_CORPUS`, else `../shared/corpus/bounces` beside `checkout`; undefined when neither holds expected.json. */
export function corpusDir(env: NodeJS.ProcessEnv, checkout: string): string | undefined {
  const places = [env.SG_BOUNCE_CORPUS, resolve(checkout, '../shared/corpus/bounces')]
  return places.find((d) => d && existsSync(join(d, 'expected.json')))
}

/**
 * The half a file is in, by the first byte of SHA-256 of its name: even → A (for
 * developing: every disagreement is listed by file), odd → B (for measuring
 * only: figures and groups, never file names). Computed here, never stored.
 */
export const halfOf = (file: string): 'A' | 'B' => (createHash('sha256').update(file, 'utf8').digest()[0]! % 2 === 0 ? 'A' : 'B')

export interface Expected {
  file: string
  recipients: { status: string; reply: string; reason: string; hard: boolean; feedback_type?: string }[]
}

export const FIGURES = ['recipient', 'status', 'category', 'hard'] as const
export type Figure = (typeof FIGURES)[number]
/** The targets, the floors on A and on B alike (#36 "Done when"). */
export const TARGETS: Record<Figure, number> = { recipient: 0.98, status: 0.95, category: 0.9, hard: 0.95 }

export interface Score {
  entries: number
  ok: Record<Figure, number>
  /** One line per disagreeing entry, with its file name (A only is ever printed this way). */
  lines: string[]
  /** Disagreements by group: `category: label → ours`, `hard: label → ours`, `status: label → ours`. */
  groups: Map<string, number>
  crashes: string[]
  slow: string[]
}

export const emptyScore = (): Score => ({
  entries: 0,
  ok: { recipient: 0, status: 0, category: 0, hard: 0 },
  lines: [],
  groups: new Map(),
  crashes: [],
  slow: [],
})

/** docs/return-path.md's table: our category (first word of the first cell) → the Sisimai reasons in the second cell. */
export function mappingTable(readme: string): Map<string, Set<string>> {
  const start = readme.indexOf('| Category | Sisimai reasons |')
  const map = new Map<string, Set<string>>()
  if (start < 0) return map
  for (const line of readme.slice(start).split('\n').slice(2)) {
    if (!line.startsWith('|')) break
    const [, ours, theirs] = line.split('|').map((c) => c.trim())
    map.set(ours!.split(' ')[0]!, new Set(theirs!.split(',').map((r) => r.trim())))
  }
  return map
}

/** Sisimai's own codes for "the message had none": 5.0.9xx, 4.0.9xx, 5.9.xxx. */
const pseudo = (s: string) => !s || /^[45]\.0\.9\d\d$/.test(s) || s.startsWith('5.9.')

const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1)

/** Reads one labelled file and adds its entries to `score`. */
export async function scoreFile(dir: string, e: Expected, map: Map<string, Set<string>>, classifier: Classifier, score: Score): Promise<void> {
  const started = performance.now()
  let report: Report
  try {
    report = await parseReport(readFileSync(join(dir, e.file)))
  } catch (err) {
    score.crashes.push(`${e.file}: ${(err as Error).message}`)
    return
  }
  // A hang detector, not a timing test: the whole corpus reads in well under a second.
  if (performance.now() - started > 2000) score.slow.push(e.file)
  for (const [i, want] of e.recipients.entries()) {
    score.entries++
    const got = report.recipients[i]
    let category = 'none'
    let hard = false
    let status = got?.status ?? ''
    if (report.kind === 'feedback') category = 'complaint'
    else if (report.kind === 'auto-reply') category = 'auto-reply'
    else if (got?.action === 'delivered') category = 'delivered'
    else if (got) ({ category, hard, status } = classifier.classify(failureOf(got)))
    const found = Boolean(got?.address) || report.kind === 'auto-reply'
    // Where Sisimai found no code either, a code of the same class (or none) agrees.
    const statusOk = found && (pseudo(want.status) ? !want.status || !status || status[0] === want.status[0] : status === want.status)
    const categoryOk = map.get(category)?.has(want.reason) ?? false
    score.ok.recipient += Number(found)
    score.ok.status += Number(statusOk)
    score.ok.category += Number(categoryOk)
    score.ok.hard += Number(hard === want.hard)
    if (!categoryOk) bump(score.groups, `category: ${want.reason} → ${category}`)
    if (hard !== want.hard) bump(score.groups, `hard: ${want.hard ? 'hard' : 'soft'} → ${hard ? 'hard' : 'soft'}`)
    if (!statusOk) bump(score.groups, `status: ${want.status || '-'} → ${found ? status || '-' : 'no recipient'}`)
    if (!statusOk || !categoryOk || hard !== want.hard)
      score.lines.push(
        `${e.file}#${i} expected ${want.reason} ${want.status || '-'} ${want.hard ? 'hard' : 'soft'}; ` +
          `got ${category} ${status || '-'} ${hard ? 'hard' : 'soft'} (${got?.address || 'no recipient'})`,
      )
  }
}

export const percent = (s: Score, k: Figure) => (s.entries ? (s.ok[k] / s.entries) * 100 : 0)

/** `category 91.2 % (target 90 %)` for each figure. */
export const figuresLine = (s: Score) => FIGURES.map((k) => `${k} ${percent(s, k).toFixed(1)} % (target ${TARGETS[k] * 100} %)`).join(', ')

/** B's disagreements by group, largest first, without file names. */
export const groupLines = (s: Score) =>
  [...s.groups]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([g, n]) => `${String(n).padStart(3)}  ${g}`)
    .join('\n')
