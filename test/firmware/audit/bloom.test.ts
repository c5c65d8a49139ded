import t from 'tap'
import { BloomFilter, recordKeys } from '../../../firmware/audit/bloom.ts'

t.test('never a false negative; about 1 % false positives at the planned size', async (t) => {
  const f = BloomFilter.forKeys(20_000)
  for (let i = 0; i < 20_000; i++) f.add(`i:Q${i}`)
  let missed = 0
  for (let i = 0; i < 20_000; i++) if (!f.has(`i:Q${i}`)) missed++
  t.equal(missed, 0)
  let wrong = 0
  for (let i = 0; i < 20_000; i++) if (f.has(`i:R${i}`)) wrong++
  t.ok(wrong / 20_000 < 0.02, `${((wrong / 20_000) * 100).toFixed(2)} % false positives`)
})

t.test('survives serialisation; a damaged file is not trusted', async (t) => {
  const f = BloomFilter.forKeys(100)
  f.add('s:S-2026-11-000123')
  const back = BloomFilter.parse(f.serialize())!
  t.ok(back.has('s:S-2026-11-000123'))
  t.notOk(back.has('s:S-2026-11-000124'))
  t.equal(BloomFilter.parse(f.serialize().subarray(0, 40)), undefined, 'truncated')
  t.equal(BloomFilter.parse(Buffer.from('not a filter at all, not at all')), undefined)
})

t.test('the keys of a record: queue id, statement id, recipient HMACs', async (t) => {
  t.same(recordKeys({ id: 'Q1', statementId: 'S-1', recipients: [{ h: 'ab', m: 'x' }, { h: 'cd' }] }), ['i:Q1', 's:S-1', 'r:ab', 'r:cd'])
  t.same(recordKeys({ type: 'audit.started' } as never), [])
})
