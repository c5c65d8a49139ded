import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { Classifier } from '../../../firmware/return-path/classify.ts'
import {
  CORPUS_MISSING,
  corpusDir,
  emptyScore,
  FIGURES,
  figuresLine,
  groupLines,
  halfOf,
  mappingTable,
  percent,
  scoreFile,
  TARGETS,
  type Expected,
} from '../../helpers/bounce-corpus.ts'

/**
 * M8, M9 (#36): real bounces from about 80 mail systems (../shared/corpus/bounces,
 * read in place, never copied here) through the parser and the classifier,
 * measured honestly. The corpus is split in two by the first byte of SHA-256 of
 * each file name (even → A, odd → B), computed here and never stored:
 * - A is for developing: every disagreement is listed by file;
 * - B is only for measuring: its figures, and its disagreements counted by
 *   group (label → ours), never by file. No rule is changed because of B.
 * The floors on A and on B are the targets, not the last measured
 * figures. The labels are Sisimai's reason names; docs/return-path.md's table
 * maps our categories to them, and this test reads that table.
 */
const REPO = fileURLToPath(new URL('../../../', import.meta.url))

t.test('#36: without the corpus the test says where it looks, in one line', async (t) => {
  const empty = mkdtempSync(join(tmpdir(), 'sg-corpus-'))
  t.teardown(() => rmSync(empty, { recursive: true, force: true }))
  // A checkout in a folder with no ../shared, and SG_BOUNCE_CORPUS naming an empty folder.
  t.equal(corpusDir({ SG_BOUNCE_CORPUS: empty }, join(empty, 'checkout')), undefined, 'no corpus found')
  t.match(CORPUS_MISSING, /SG_BOUNCE_CORPUS/, 'the message names the variable')
  t.match(CORPUS_MISSING, /\.\.\/shared\/corpus\/bounces/, 'and the place next to the checkout')
  t.notMatch(CORPUS_MISSING, /\n/, 'in one line')
})

t.test('M8: real bounces from ~80 mail systems are read and classified, on A and on B', async (t) => {
  const dir = corpusDir(process.env, REPO)
  if (!dir) {
    t.fail(CORPUS_MISSING, { stack: '', at: null })
    return
  }
  const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected[]
  t.ok(expected.length >= 300, `${expected.length} labelled files`)
  const map = mappingTable(readFileSync(join(REPO, 'docs/return-path.md'), 'utf8'))
  t.ok(map.size >= 20, `docs/return-path.md's table maps ${map.size} categories`)
  const classifier = new Classifier()
  for (const category of map.keys()) {
    if (['delivered', 'auto-reply', 'complaint'].includes(category)) continue
    t.ok(category in classifier.rules.categories, `the table's ${category} is a category of the rules`)
  }

  const scores = { A: emptyScore(), B: emptyScore(), all: emptyScore() }
  for (const e of expected) {
    await scoreFile(dir, e, map, classifier, scores[halfOf(e.file)])
    await scoreFile(dir, e, map, classifier, scores.all)
  }
  const files = { A: expected.filter((e) => halfOf(e.file) === 'A').length, B: expected.filter((e) => halfOf(e.file) === 'B').length }
  t.same(scores.all.crashes, [], '0 crashes')
  t.same(scores.all.slow, [], '0 hangs (no file over 2 s)')
  t.comment(`A (for developing), ${files.A} files, ${scores.A.lines.length} entries disagree somewhere:\n${scores.A.lines.join('\n')}`)
  t.comment(`B (for measuring only), ${files.B} files, disagreements by group (label → ours):\n${groupLines(scores.B)}`)
  for (const half of ['A', 'B', 'all'] as const) t.comment(`${half}: ${scores[half].entries} entries: ${figuresLine(scores[half])}`)
  for (const half of ['A', 'B'] as const)
    for (const k of FIGURES)
      t.ok(
        scores[half].ok[k] / scores[half].entries >= TARGETS[k],
        `${half}: ${k} agrees for ${percent(scores[half], k).toFixed(1)} % (target ${TARGETS[k] * 100} %)`,
      )
})
