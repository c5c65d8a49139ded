import { parseArgs } from 'node:util'
import fc from 'fast-check'
import { TARGETS } from './targets.ts'

/**
 * The long fuzz run: `npm run fuzz -- --minutes 10 [--target NAME]`. Cycles
 * through every hand-written parser of outside input with fresh random seeds,
 * prints progress, and on the first failure prints the target, the seed and
 * the shrunk counterexample (replay it in test/fuzz/fuzz.test.ts) and exits 1.
 */
const { values } = parseArgs({ options: { minutes: { type: 'string', default: '1' }, target: { type: 'string' } } })
const minutes = Number(values.minutes)
if (!(minutes > 0)) {
  process.stderr.write('usage: npm run fuzz -- --minutes N [--target NAME]\n')
  process.exit(2)
}
const targets = TARGETS.filter((t) => !values.target || t.name.toLowerCase().includes(values.target.toLowerCase()))
const deadline = Date.now() + minutes * 60_000
const runs = new Map(targets.map((t) => [t.name, 0]))
let round = 0
let shown = 0
while (Date.now() < deadline) {
  for (const target of targets) {
    const seed = (Date.now() ^ (round * 7919)) | 0
    const r = fc.check(
      fc.property(target.input, (input) => target.run(input)),
      { numRuns: Math.min(2000, 5 * (target.runs ?? 400)), seed },
    )
    runs.set(target.name, runs.get(target.name)! + r.numRuns)
    if (r.failed) {
      process.stderr.write(`\nfuzz: ${target.name} FAILED (seed ${seed}, path ${r.counterexamplePath})\n${fc.defaultReportMessage(r)}\n`)
      process.exit(1)
    }
    if (Date.now() >= deadline) break
  }
  round++
  if (Date.now() - shown < 1000) continue
  shown = Date.now()
  const total = [...runs.values()].reduce((a, b) => a + b, 0)
  process.stderr.write(
    `\rfuzz: ${total.toLocaleString('en')} inputs over ${targets.length} parsers, ${Math.max(0, Math.round((deadline - Date.now()) / 1000))} s left   `,
  )
}
process.stderr.write('\n')
for (const [name, n] of runs) process.stdout.write(`${n.toLocaleString('en').padStart(12)}  ${name}\n`)
process.stdout.write('fuzz: no failure\n')
