import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import t from 'tap'
import { appendWhole, fileSink, replaceFile, writeFileAtomic } from '../../../hal/storage/files.ts'
import { tempDir, tinyDisk } from '../../helpers/box.ts'

t.test('writeFileAtomic: the new content with the mode asked for, no temporary file left', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'sub', 'config.json')
  writeFileAtomic(file, 'one')
  writeFileAtomic(file, Buffer.from('two'), 0o640)
  t.equal(readFileSync(file, 'utf8'), 'two')
  t.equal(statSync(file).mode & 0o777, 0o640)
  t.same(readdirSync(join(dir, 'sub')), ['config.json'])
})

t.test('replaceFile: a fill that fails leaves the old content and no temporary file', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'journal')
  writeFileSync(file, 'old')
  await t.rejects(
    replaceFile(file, async (fh) => {
      await fh.write('half of the new')
      throw new Error('broken source')
    }),
    /broken source/,
  )
  t.equal(readFileSync(file, 'utf8'), 'old')
  t.same(readdirSync(dir), ['journal'])
  await replaceFile(file, (fh) => pipeline(Readable.from([Buffer.from('new '), Buffer.from('content')]), fileSink(fh)))
  t.equal(readFileSync(file, 'utf8'), 'new content')
  t.same(readdirSync(dir), ['journal'])
})

t.test('replaceFile: a leftover temporary file from a crash is overwritten, unless the name must be unique', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'a.rec')
  writeFileSync(`${file}.tmp`, 'torn')
  await t.rejects(
    replaceFile(file, (fh) => fh.writeFile('x'), { exclusive: true }),
    { code: 'EEXIST' },
  )
  writeFileSync(`${file}.tmp`, 'torn')
  await replaceFile(file, (fh) => fh.writeFile('whole'))
  t.equal(readFileSync(file, 'utf8'), 'whole')
})

t.test('replaceFile and appendWhole on a full disk: nothing torn is left behind', async (t) => {
  const mnt = tinyDisk(t, '64k')
  const target = join(mnt, 'big')
  await t.rejects(
    replaceFile(target, (fh) => pipeline(Readable.from([Buffer.alloc(256 * 1024, 1)]), fileSink(fh))),
    { code: 'ENOSPC' },
  )
  t.same(readdirSync(mnt), [], 'neither target nor temporary file')

  const log = join(mnt, 'log')
  const fh = await open(log, 'a')
  t.teardown(() => fh.close())
  const first = await appendWhole(fh, Buffer.from('record 1\n'), 0, true)
  t.equal(first, 9)
  await t.rejects(appendWhole(fh, Buffer.alloc(256 * 1024, 0x41), first, true), { code: 'ENOSPC' })
  t.equal(readFileSync(log, 'utf8'), 'record 1\n', 'the part the disk took is cut back to the last whole record')
  const second = await appendWhole(fh, Buffer.from('record 2\n'), first, true)
  t.equal(second, 18)
  t.equal(readFileSync(log, 'utf8'), 'record 1\nrecord 2\n')
})
