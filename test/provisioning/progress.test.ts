import t from 'tap'
import { Progress } from '../../provisioning/progress.ts'

/** A stand-in for standard error that records what is drawn (only its isTTY and write are used). */
function terminal(isTTY: boolean) {
  const written: string[] = []
  return { out: { isTTY, write: (s: string) => written.push(s) } as unknown as NodeJS.WriteStream, written }
}

t.test('a bar with percent and counts on a terminal, redrawn in place at most ten times a second', async (t) => {
  const { out, written } = terminal(true)
  const p = new Progress('export', 'rows', out)
  p.total = 1_000_000
  t.match(p.line(500_000, Date.now()), /^export {2}\[#{10}-{10}\] {2}50% {2}500,000 \/ 1,000,000 rows {2}\d+\.\d s$/)
  for (let i = 1; i <= 1000; i++) p.update(i * 1000)
  t.ok(written.length >= 1 && written.length < 5, `drawn ${written.length} times for 1,000 updates in a moment`)
  t.ok(
    written.every((w) => w.startsWith('\r') && w.endsWith('\x1b[K')),
    'each draw returns to the line start and clears the rest',
  )
  p.done(1_000_000)
  t.match(written.at(-1), /\[#{20}\] 100% {2}1,000,000 \/ 1,000,000 rows .*\n$/, 'the last line stays')
})

t.test('without a total, a count; to a pipe or a file, nothing', async (t) => {
  const { out } = terminal(true)
  t.match(new Progress('rebuild', 'records', out).line(1234, Date.now()), /^rebuild {2}1,234 records {2}\d+\.\d s$/)
  const pipe = terminal(false)
  const p = new Progress('export', 'rows', pipe.out)
  p.update(10)
  p.done(10)
  t.equal(p.shown, false)
  t.same(pipe.written, [])
})
