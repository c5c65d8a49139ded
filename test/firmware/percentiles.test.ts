import t from 'tap'
import { Percentiles } from '../../firmware/percentiles.ts'

t.test('percentiles of the samples kept; the oldest fall out when the ring is full', async (t) => {
  const p = new Percentiles(100)
  t.same(p.summary(), { samples: 0, p50: 0, p99: 0, max: 0 })
  for (let i = 1; i <= 100; i++) p.add(i)
  t.same(p.summary(), { samples: 100, p50: 51, p99: 100, max: 100 })
  for (let i = 0; i < 100; i++) p.add(1000 + i) // replaces every earlier sample
  t.equal(Math.min(...p.values()), 1000)
  t.same(p.summary(), { samples: 200, p50: 1050, p99: 1099, max: 1099 })
  t.equal(p.values().length, 100)
  const q = new Percentiles(4)
  for (const v of [1.26, 2.34, 3.36, 4.44]) q.add(v)
  t.same(q.summary(), { samples: 4, p50: 3.4, p99: 4.4, max: 4.4 }, 'rounded to a tenth of a millisecond')
})
