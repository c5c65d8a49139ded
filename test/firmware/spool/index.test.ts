import t from 'tap'
import { SpoolIndex } from '../../../firmware/spool/index.ts'
import type { SpoolEntry, SpoolState } from '../../../firmware/spool/types.ts'

// A small deterministic generator, so a failure can be replayed.
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x / 2 ** 32
  }
}

const entry = (id: string, next: number, state: SpoolState = 'queued'): SpoolEntry => ({
  id,
  epoch: 'e1',
  created: next,
  state,
  attempts: 0,
  nextAttemptAt: next,
})

t.test('claims due mail earliest first, FIFO among equal times, and marks it in flight', async (t) => {
  const ix = new SpoolIndex()
  ix.set(entry('late', 300))
  ix.set(entry('a', 100))
  ix.set(entry('b', 100))
  ix.set(entry('early', 50))
  ix.set(entry('held', 10, 'held'))
  t.same(
    ix.claimDue(99, 10).map((e) => e.id),
    ['early'],
  )
  const next = ix.claimDue(200, 10)
  t.same(
    next.map((e) => e.id),
    ['a', 'b'],
    'same time: in the order they were scheduled',
  )
  t.equal(ix.get('a')?.state, 'inflight')
  t.same(
    ix.claimDue(1000, 10).map((e) => e.id),
    ['late'],
  )
  t.same(ix.claimDue(1000, 10), [], 'in flight and held mail is not claimed again')
  t.equal(ix.nextDueAt(), Infinity)
  ix.update('a', { state: 'deferred', nextAttemptAt: 500 })
  t.equal(ix.nextDueAt(), 500, 'a deferral schedules the mail again')
  ix.update('held', { state: 'deferred', nextAttemptAt: 400 }) // released
  t.same(
    ix.claimDue(1000, 1).map((e) => e.id),
    ['held'],
    'limit respected, earliest first',
  )
  ix.delete('a')
  t.same(ix.claimDue(1000, 10), [], 'a deleted entry is never claimed')
})

t.test('a reused slot does not inherit the old entry’s place in the queue', async (t) => {
  const ix = new SpoolIndex()
  ix.set(entry('old', 10))
  ix.delete('old')
  ix.set(entry('new', 1000)) // takes the freed slot
  t.same(ix.claimDue(500, 10), [], 'the old due time is stale')
  t.same(
    ix.claimDue(1000, 10).map((e) => e.id),
    ['new'],
  )
})

t.test('agrees with a brute-force model over random operations (holds, releases, deferrals, deletes)', async (t) => {
  for (const seed of [1, 2, 3, 42, 2026]) {
    const r = rng(seed)
    const ix = new SpoolIndex()
    const model = new Map<string, { state: SpoolState; next: number; order: number }>()
    let order = 0
    let now = 0
    let n = 0
    let mismatch = ''
    for (let step = 0; step < 20_000 && !mismatch; step++) {
      const ids = [...model.keys()]
      const pick = () => ids[Math.floor(r() * ids.length)]!
      const op = r()
      if (op < 0.3 || ids.length === 0) {
        const id = `m${n++}`
        const next = now + Math.floor(r() * 50)
        ix.set(entry(id, next))
        model.set(id, { state: 'queued', next, order: order++ })
      } else if (op < 0.45) {
        const id = pick()
        const m = model.get(id)!
        if (m.state === 'inflight') {
          const next = now + Math.floor(r() * 100)
          ix.update(id, { state: 'deferred', nextAttemptAt: next })
          model.set(id, { state: 'deferred', next, order: order++ })
        }
      } else if (op < 0.5) {
        const id = pick()
        ix.update(id, { state: 'held' })
        model.get(id)!.state = 'held'
      } else if (op < 0.55) {
        const id = pick()
        if (model.get(id)!.state === 'held') {
          ix.update(id, { state: 'deferred', nextAttemptAt: now })
          model.set(id, { state: 'deferred', next: now, order: order++ })
        }
      } else if (op < 0.7) {
        const id = pick()
        ix.delete(id)
        model.delete(id)
      } else {
        now += Math.floor(r() * 20)
        const limit = 1 + Math.floor(r() * 8)
        const expected = [...model]
          .filter(([, m]) => (m.state === 'queued' || m.state === 'deferred') && m.next <= now)
          .sort(([, a], [, b]) => a.next - b.next || a.order - b.order)
          .slice(0, limit)
          .map(([id]) => id)
        const got = ix.claimDue(now, limit).map((e) => e.id)
        for (const id of expected) model.get(id)!.state = 'inflight'
        if (JSON.stringify(got) !== JSON.stringify(expected)) mismatch = `seed ${seed} step ${step}: got ${got.join(',')} expected ${expected.join(',')}`
      }
    }
    t.equal(mismatch, '', `seed ${seed}: claims match the model`)
    t.equal(ix.size, model.size)
  }
})

t.test('many changes to waiting mail do not grow the due queue without bound', async (t) => {
  const ix = new SpoolIndex()
  for (let i = 0; i < 100; i++) ix.set(entry(`m${i}`, i))
  // Hold and release every message many times: each release pushes a new heap entry.
  for (let round = 0; round < 200; round++) {
    for (let i = 0; i < 100; i++) {
      ix.update(`m${i}`, { state: 'held' })
      ix.update(`m${i}`, { state: 'deferred', nextAttemptAt: round })
    }
  }
  t.ok(ix.dueQueueLength <= 2 * ix.size + 1024, `due queue ${ix.dueQueueLength} entries for ${ix.size} messages after 20,000 releases`)
  const claimed = ix.claimDue(Infinity, 1000)
  t.equal(claimed.length, 100, 'each message claimed once, whatever its history')
  t.equal(new Set(claimed.map((e) => e.id)).size, 100)
})

t.test('S11: the oldest mail in the queue, whatever its state, for the queue-age alarm', async (t) => {
  const ix = new SpoolIndex()
  t.equal(ix.oldestCreated(), undefined, 'empty')
  ix.set(entry('a', 300))
  ix.set(entry('b', 100, 'held'))
  ix.set(entry('c', 200, 'deferred'))
  t.equal(ix.oldestCreated(), 100)
  ix.delete('b')
  t.equal(ix.oldestCreated(), 200, 'a delivered one no longer counts')
})

t.test('a page of the list: the entries a filter accepts, after skipping the earlier pages', async (t) => {
  const ix = new SpoolIndex()
  for (let i = 0; i < 10; i++) ix.set(entry(`m${i}`, i, i % 2 ? 'held' : 'queued'))
  const held = (skip: number) => ix.select(2, (s) => s === 'held', skip).map((e) => e.id)
  t.same(held(0), ['m1', 'm3'])
  t.same(held(2), ['m5', 'm7'])
  t.same(held(4), ['m9'])
  t.same(held(6), [])
})
