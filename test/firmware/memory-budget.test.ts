import t from 'tap'
import { MemoryBudget } from '../../firmware/memory-budget.ts'

/** #29 finding 6: room in arrival order, so a spent budget refuses the latest transactions, never all of them. */

t.test('admission: room for a transaction now, or none before its data', async (t) => {
  const b = new MemoryBudget(100, 4)
  const first = b.admit(10)
  t.ok(first, 'room for 10 × 4')
  t.ok(b.admit(10), 'and for another')
  t.equal(b.admit(10), undefined, 'not for a third (120 > 100): refused before its data')
  t.equal(b.used, 80)
  first!.release()
  t.ok(b.admit(10), 'released room is given again')
  t.equal(b.peak, 80)
})

t.test('one transaction is always admitted when nothing else is held', async (t) => {
  const b = new MemoryBudget(100, 4)
  const big = b.admit(1000)
  t.ok(big, 'larger than the budget, but alone')
  big!.reading()
  t.ok(big!.grow(2000), 'and it may grow while alone')
  t.equal(b.admit(1), undefined, 'while it holds the room nobody else gets any')
  big!.release()
  t.equal(b.used, 0)
})

t.test('growth beyond the hold: younger readers give way, in arrival order', async (t) => {
  const b = new MemoryBudget(100, 1)
  const holds = [1, 2, 3, 4, 5, 6].map(() => b.admit(10)!)
  const evicted: number[] = []
  holds.forEach((h, i) => {
    h.onEvict = () => evicted.push(i + 1)
    h.reading()
  })
  // Every transaction's data outgrows its first 10 bytes, the oldest first, as concurrent ones do.
  for (let size = 20; size <= 50; size += 10) for (const h of holds) h.grow(size)
  t.same(evicted, [6, 5, 4, 3], 'the four admitted last gave way, youngest first')
  t.same(
    holds.map((h) => h.evicted),
    [false, false, true, true, true, true],
  )
  t.ok(
    holds.slice(0, 2).every((h) => h.held === 50),
    'the first two hold all their data (budget ÷ size of them)',
  )
  t.ok(b.used <= 100, `never over the budget (${b.used})`)
  t.notOk(holds[5]!.grow(60), 'an evicted transaction never gets room again')
  t.equal(b.evictions, 4)
})

t.test('a transaction that has not started its data, or whose data is whole, keeps its room', async (t) => {
  const b = new MemoryBudget(100, 1)
  const old = b.admit(10)!
  old.reading()
  const waiting = b.admit(30)! // admitted at MAIL, its data not yet begun
  const settled = b.admit(10)!
  settled.reading()
  settled.settle(30) // its data is all there: it no longer gives way
  t.equal(b.used, 70)
  t.notOk(old.grow(50), 'no younger reader to give way: the older one fails itself')
  t.ok(old.evicted)
  t.notOk(waiting.evicted, 'the one waiting for its data still holds its room')
  t.notOk(settled.evicted)
  t.equal(b.used, 60)
})

t.test('settle shrinks a hold to what arrived', async (t) => {
  const b = new MemoryBudget(1000, 4)
  const h = b.admit(100)!
  h.reading()
  h.settle(10)
  t.equal(b.used, 40)
  h.release()
  h.release()
  t.equal(b.used, 0, 'released once, whatever calls it twice')
})
