import { performance } from 'node:perf_hooks'
import t from 'tap'
import fc from 'fast-check'
import { readZip } from '../../firmware/policy/zip.ts'
import { pdfEncryption } from '../../firmware/policy/pdf.ts'
import { PDF, TARGETS, ZIP } from './targets.ts'

/**
 * Bounded property runs of every hand-written parser of outside input (a long
 * run: `npm run fuzz -- --minutes N`), and the growth test: each parser's
 * worst known input family takes about four times as long at four times the
 * size. A quadratic parser takes sixteen times as long, an exponential one
 * never ends.
 */
t.test('the seeds are read as intended (so the fuzzing starts from real structures)', async (t) => {
  t.match(pdfEncryption(PDF), { verdict: 'encrypted' })
  t.match(readZip(ZIP), { ok: true, entries: [{ name: 'statement.pdf', encrypted: true }] })
})

for (const target of TARGETS) {
  t.test(`property: ${target.name} answers hostile input or fails with its own coded error`, async (t) => {
    const numRuns = target.runs ?? 400
    fc.assert(
      fc.property(target.input, (input) => target.run(input)),
      { numRuns, seed: 1414 },
    )
    t.pass(`${numRuns} inputs`)
  })
}

t.test('growth: every parser is linear in its worst known input (×4 input, ×4 time)', async (t) => {
  // One sample: the parser run `reps` times, the time per run.
  const sample = (f: () => void, reps: number) => {
    const s = performance.now()
    for (let i = 0; i < reps; i++) f()
    return (performance.now() - s) / reps
  }
  // The small and the large input are sampled in turn and the least disturbed sample of each is kept, so a
  // busy moment of the machine (other test jobs, coverage, garbage collection) meets both alike: measured one
  // after the other, a linear scanner once read 1.6 ms at 512 KiB and 22.4 ms at 2 MiB (×13.6) in CI, ×4.5
  // alone. A fast parser runs several times per sample, so no sample is shorter than about 10 ms and one
  // timer tick or one collection cannot decide the ratio.
  const measure = (small: () => void, large: () => void, samples: number) => {
    const once = sample(small, 1)
    const reps = Math.min(50, Math.max(1, Math.ceil(10 / Math.max(once, 0.2))))
    let a = Infinity
    let b = Infinity
    for (let i = 0; i < samples; i++) {
      a = Math.min(a, sample(small, reps))
      b = Math.min(b, sample(large, reps))
    }
    return { a, b, ratio: b / a }
  }
  // A differential target also runs the other reader, whose time is not ours to judge; the parser's own target is timed.
  for (const target of TARGETS.filter((x) => !x.differential)) {
    const n = target.size ?? 1 << 19
    const small = target.worst(n)
    const large = target.worst(4 * n)
    target.run(large) // warm up, and let the engine flatten the input strings once
    const m = measure(
      () => target.run(small),
      () => target.run(large),
      5,
    )
    let verdict = `${m.a.toFixed(2)} ms at ${n} bytes, ${m.b.toFixed(2)} ms at ${4 * n} (×${m.ratio.toFixed(2)})`
    let ratio = m.ratio
    // A linear parser can still step once when its data outgrow a cache or the young generation (readZip alone:
    // ×2 a doubling, ×3.5 from 512 KiB to 1 MiB, ×2 after that, so ×7.7 across the step). A quadratic one is ×16
    // again at the next four times the size; a step is not. The next size is timed only when the first ratio is
    // high and the parser fast enough at 4n that 16n cannot take minutes.
    if (ratio >= 8 && m.b < 1000) {
      const larger = target.worst(16 * n)
      const next = measure(
        () => target.run(large),
        () => target.run(larger),
        3,
      )
      verdict += `; ${next.b.toFixed(2)} ms at ${16 * n} (×${next.ratio.toFixed(2)})`
      ratio = Math.min(ratio, next.ratio)
    }
    // Four times the input: linear takes ×4, quadratic ×16. The margin is for a busy 2-core machine under
    // coverage instrumentation, where garbage collection alone has made a linear parser look ×4.2 at double the size.
    t.ok(ratio < 8, `${target.name}: ${verdict}`)
  }
})
