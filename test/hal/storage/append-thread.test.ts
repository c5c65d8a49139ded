import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { AppendThread, STAMP } from '../../../hal/storage/append-thread.ts'
import { tempDir } from '../../helpers/box.ts'

/** #33: the spool journal's writer: a thread of its own, each write durable and whole, stamped on that thread. */

t.test('each append is stamped with the time its write began, in order, and the write’s time comes back', async (t) => {
  const path = join(tempDir(t), 'journal')
  writeFileSync(path, 'before\n')
  const out = new AppendThread(path)
  t.teardown(() => out.close())
  const before = Date.now()
  const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => out.append(`line ${i} ${STAMP}\n`)))
  const after = Date.now()
  const lines = readFileSync(path, 'latin1').trim().split('\n')
  t.equal(lines[0], 'before', 'appended after what the file had')
  t.same(
    lines.slice(1).map((l) => l.split(' ')[1]),
    Array.from({ length: 200 }, (_, i) => String(i)),
    'in the order asked',
  )
  for (const [i, r] of replies.entries()) {
    const stamp = parseInt(lines[i + 1]!.split(' ')[2]!, 36)
    if (stamp !== r.at || r.at < before || r.at > after || !(r.ms >= 0)) t.fail(`line ${i}: stamp ${stamp}, reply ${JSON.stringify(r)}`)
  }
  t.pass('every line carries the stamp its reply names, taken on the thread within the appends')
})

t.test('a write the disk takes only in part is cut back: the file ends with whole writes, and the error names ENOSPC', async (t) => {
  const mnt = mkdtempSync(join(tmpdir(), 'sg-append-'))
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt])
  t.teardown(() => {
    execFileSync('umount', ['-l', mnt])
    rmSync(mnt, { recursive: true, force: true })
  })
  const path = join(mnt, 'journal')
  const out = new AppendThread(path)
  const results = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => out.append(`${String(i).padStart(3, '0')} ${'x'.repeat(1500)}\n`)))
  await out.close()
  const failed = results.filter((r) => r.status === 'rejected')
  t.ok(failed.length > 0, `${failed.length} appends failed on the full disk`)
  t.match((failed[0] as PromiseRejectedResult).reason, { code: 'ENOSPC' })
  const text = readFileSync(path, 'latin1')
  t.ok(text.endsWith('\n'), 'the file still ends with a whole line')
  t.equal(text.split('\n').filter(Boolean).length, results.length - failed.length, 'and holds exactly the appends that succeeded')
  await t.rejects(out.append('late\n'), /closed/, 'after close an append fails')
})

t.test('closed at once — before the sync thread is even running, or with a write still going — both threads end', async (t) => {
  const dir = tempDir(t)
  // A missed wake-up would hang for good; a busy machine only makes a thread start slowly (seconds, with the suite around it).
  for (let i = 0; i < 10; i++) {
    const out = new AppendThread(join(dir, `j${i}`))
    const write = i % 2 ? out.append(`line ${STAMP}\n`) : undefined
    const closed = await Promise.race([out.close().then(() => 'closed'), new Promise((r) => setTimeout(() => r('hung'), 30_000))])
    if (closed !== 'closed') return t.fail(`close ${i} hung`)
    if (write) await write
  }
  t.pass('10 closes returned, the pending writes durable first')
})

t.test('lines are written while others wait for their flush: 500 appends share far fewer fdatasyncs, and each resolves only once durable', async (t) => {
  const path = join(tempDir(t), 'journal')
  const out = new AppendThread(path)
  t.teardown(() => out.close())
  const sizes: number[] = []
  const replies = await Promise.all(
    Array.from({ length: 500 }, (_, i) =>
      out.append(`line ${i} ${STAMP}\n`).then((r) => {
        sizes.push(readFileSync(path).length)
        return r
      }),
    ),
  )
  t.ok(
    sizes.every((s, i) => s >= (i + 1) * 'line 0 x\n'.length),
    'when an append resolves, its line (and every earlier one) is in the file',
  )
  t.ok(out.flushes >= 1 && out.flushes < 250, `${out.flushes} fdatasyncs for 500 lines`)
  t.ok(
    replies.every((r) => r.ms >= 0),
    'each reply names the time from its stamp to durable',
  )
})

t.test('with a flush log, each flush is noted (end of file, time) in a file a kill -9 leaves: the last covers every line', async (t) => {
  const dir = tempDir(t)
  const path = join(dir, 'journal')
  const out = new AppendThread(path, { flushLog: join(dir, 'journal.flushes') })
  await Promise.all(Array.from({ length: 50 }, (_, i) => out.append(`line ${i} ${STAMP}\n`)))
  await out.close()
  const [start, ...lines] = readFileSync(join(dir, 'journal.flushes'), 'latin1').trim().split('\n')
  t.equal(start, 'start 0', 'first, where this file’s appends began')
  const flushes = lines.map((l) => l.split(' ').map(Number))
  t.equal(flushes.length, out.flushes, 'one line per flush')
  t.ok(
    flushes.every(([end, at], i) => i === 0 || (end! > flushes[i - 1]![0]! && at! >= flushes[i - 1]![1]!)),
    'in order',
  )
  t.equal(flushes.at(-1)![0], readFileSync(path).length, 'the last flush covers the whole file')
})
