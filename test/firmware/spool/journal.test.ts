import { appendFileSync, readFileSync, rmSync } from 'node:fs'
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
  // More than the rest of that page, in one group write.
  const results = await Promise.allSettled(Array.from({ length: 400 }, (_, i) => journal.append(`big${i}xxxxxxxx`, 'deferred', 2, 1_800_000_000_000)))
  t.ok(
    results.some((r) => r.status === 'rejected'),
    'the disk refused',
  )
  const text = readFileSync(path, 'latin1')
  t.ok(text.endsWith('\n'), 'the journal still ends with a whole line')
  for (const line of text.trim().split('\n')) t.match(line, /^\w+ D \d+ \w+$/, 'every line whole')
  t.ok(text.length >= before)

  rmSync(filler)
  await journal.append('after', 'final', 3, 0)
  const states = await journal.load()
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
      new Promise<false>((r) => setTimeout(() => r(false), 2000)),
    ])
    if (!done) return void t.fail(`append ${i} never completed`)
  }
  t.equal((await journal.load()).size, 50)
})
