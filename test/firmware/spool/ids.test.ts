import t from 'tap'
import { newQueueId, parseRecordName, recordName, shardOf } from '../../../firmware/spool/ids.ts'

t.test('queue ids: 12 URL-safe characters, unguessable, no repeats in 100 000', async (t) => {
  const ids = Array.from({ length: 100_000 }, newQueueId)
  t.ok(ids.every((id) => /^[A-Za-z0-9_-]{12}$/.test(id)))
  t.equal(new Set(ids).size, ids.length)
})

t.test('record file names carry id, epoch and creation time, so a restart indexes without reading records', async (t) => {
  const e = { id: newQueueId(), epoch: 'sn3k', created: 1_800_000_123_456 }
  t.same(parseRecordName(recordName(e)), e)
  t.equal(parseRecordName(`${recordName(e)}.tmp`), undefined, 'a temporary file is not a record')
  t.equal(parseRecordName('journal'), undefined)
  t.equal(parseRecordName('../x~1~2.rec'), undefined, 'nothing outside the id alphabet')
})

t.test('16 shards, chosen by the id', async (t) => {
  const shards = new Set(Array.from({ length: 2000 }, () => shardOf(newQueueId())))
  t.same([...shards].sort(), '0123456789abcdef'.split(''))
})
