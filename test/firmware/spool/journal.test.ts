import { appendFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { Journal } from '../../../firmware/spool/journal.ts'
import { tempDir, tinyDisk } from '../../helpers/box.ts'

t.test('a write the full disk takes only part of is cut back: no torn line for the next one to glue onto', async (t) => {
  const mnt = tinyDisk(t, '64k')
  const path = join(mnt, 'journal')
  const journal = new Journal(path)
  await journal.compact([])
  t.teardown(() => journal.close())
  for (let i = 0; i < 10; i++) await journal.append(`ok${i}xxxxxxxxx`, 'deferred', 1, 1_800_000_000_000)
  const before = readFileSync(path).length

  const filler = join(mnt, 'filler')
  try {
    for (;;) appendFileSync(filler, Buffer.alloc(4096))
  } catch {
    // full: only the rest of the journal's last page is left
  }
  // More than the rest of that page.
  const results = await Promise.allSettled(Array.from({ length: 400 }, (_, i) => journal.append(`big${i}xxxxxxxx`, 'deferred', 2, 1_800_000_000_000)))
  t.ok(
    results.some((r) => r.status === 'rejected'),
    'the disk refused',
  )
  const text = readFileSync(path, 'latin1')
  t.ok(text.endsWith('\n'), 'the journal still ends with a whole line')
  for (const line of text.trim().split('\n')) t.match(line, /^\w+ D \d+ \w+ {2}\w+$/, 'every line whole, stamped with the time its write was issued')
  t.ok(text.length >= before)

  rmSync(filler)
  await journal.append('after', 'final', 3, 0)
  const { states } = await journal.load()
  t.match(states.get('ok9xxxxxxxxx'), { state: 'deferred', attempts: 1, nextAttemptAt: 1_800_000_000_000 })
  t.match(states.get('after'), { state: 'final', attempts: 3 })
  t.equal([...states.values()].filter((s) => s !== 'queued' && Number.isNaN(s.nextAttemptAt)).length, 0)
})

t.test('appends made one after another each complete on their own (none waits for a later append)', async (t) => {
  const journal = new Journal(join(tempDir(t), 'journal'))
  await journal.compact([])
  t.teardown(() => journal.close())
  for (let i = 0; i < 50; i++) {
    const done = await Promise.race([
      journal.append(`m${i}`, 'deferred', i, 1000).then(() => true),
      // A hang detector, not a timing: an append that waits for a later one never completes. The first
      // starts the journal's thread, which took over 2 s under a full test run on a slow machine (2026-12-07).
      new Promise<false>((r) => setTimeout(() => r(false), 10_000)),
    ])
    if (!done) return void t.fail(`append ${i} never completed`)
  }
  t.equal((await journal.load()).states.size, 50)
})

t.test('#33: progress notes after a state line are unconfirmed; a later state line confirms them; old lines without a stamp still load', async (t) => {
  const path = join(tempDir(t), 'journal')
  // A journal written before #33: no stamps.
  writeFileSync(path, 'old1 D 2 1e 0,1;\nold2 A 1 1e 1.1e\n')
  const journal = new Journal(path)
  const before = await journal.load()
  t.match(before.states.get('old1'), { state: 'deferred', attempts: 2, done: '0,1;' })
  t.match(before.states.get('old2'), { state: 'awaiting', done: '1.1e' })
  await journal.compact([...before.states].map(([id, s]) => [id, s as Exclude<typeof s, 'queued'>]))
  t.teardown(() => journal.close())
  const replay = {
    trailSeq: 41,
    mx: 'mx.example.net',
    sourceIp: '127.0.0.11',
    tls: 'TLSv1.3',
    results: [{ outcome: 'delivered' as const, recipients: [0], reply: '250 ok' }],
  }
  const t0 = Date.now()
  await journal.appendProgress('m1', { done: '0;', transaction: '1.1', at: 0, replay })
  await journal.appendProgress('m1', {
    done: '0;1',
    transaction: '1.2',
    at: 0,
    replay: { ...replay, results: [{ outcome: 'bounced', recipients: [1], reply: '550 5.1.1 x' }] },
  })
  await journal.appendProgress('m2', { done: '0;', transaction: '3.1', at: 0, replay })
  await journal.append('m2', 'deferred', 3, 5000, '0;')
  const { states, progress } = await journal.load()
  t.same(
    progress.get('m1')?.map((n) => [n.transaction, n.done, n.replay.results[0]!.outcome]),
    [
      ['1.1', '0;', 'delivered'],
      ['1.2', '0;1', 'bounced'],
    ],
    'the notes of an attempt no state line closed, in order, with what to replay',
  )
  t.ok(
    progress.get('m1')!.every((n) => n.at >= t0 && n.at <= Date.now()),
    'each stamped with the time its write was issued',
  )
  t.notOk(progress.has('m2'), 'a state line after the notes confirms them')
  t.match(states.get('m2'), { state: 'deferred', attempts: 3, done: '0;' })
  t.notOk(states.has('m1'), 'notes are not a state')
  // Compaction keeps the unconfirmed notes after the states.
  await journal.compact(
    [...states].map(([id, s]) => [id, s as Exclude<typeof s, 'queued'>]),
    progress,
  )
  t.same([...(await journal.load()).progress.keys()], ['m1'])
  appendFileSync(path, 'm1 P 0 0 0; 1x 1.3 eyJ0cmFpbF')
  t.equal((await journal.load()).progress.get('m1')?.length, 2, 'a line cut in its payload by a crash is ignored')
})

t.test('#33: each line carries the stamp of its write, and the journal tells how long each line took to be durable', async (t) => {
  const path = join(tempDir(t), 'journal')
  const journal = new Journal(path)
  await journal.compact([])
  t.teardown(() => journal.close())
  const before = Date.now()
  await Promise.all(Array.from({ length: 40 }, (_, i) => journal.append(`m${i}`, 'deferred', 1, 1000)))
  const stamps = new Set(
    readFileSync(path, 'latin1')
      .trim()
      .split('\n')
      .map((l) => parseInt(l.split(' ')[5]!, 36)),
  )
  const writes = journal.recentWrites()
  t.equal(writes.length, 40, 'one write for each line')
  t.same(new Set(writes.map(([at]) => at)), stamps, 'every line’s stamp is its write’s')
  t.ok(
    writes.every(([at, ms]) => at >= before && at <= Date.now() && ms >= 0),
    'stamped within the appends, with a time to durable',
  )
  t.equal(journal.writes.summary().samples, writes.length)
})
