import { existsSync, linkSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { wipeFile, wipeTree } from '../../../hal/storage/wipe.ts'
import { tempDir } from '../../helpers/box.ts'

t.test('S13: a wiped file is overwritten with zeros before it is unlinked (a second link to it sees the zeros)', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'secret')
  writeFileSync(file, 'the PIN is 123456'.repeat(100_000))
  linkSync(file, join(dir, 'witness'))
  t.same(wipeFile(file), { files: 1, bytes: 1_700_000 })
  t.notOk(existsSync(file))
  const left = readFileSync(join(dir, 'witness'))
  t.equal(left.length, 1_700_000)
  t.ok(
    left.every((b) => b === 0),
    'every byte zero',
  )
})

t.test('wipeTree: every file below, directories removed, symlinks unlinked and never followed', async (t) => {
  const dir = tempDir(t)
  const outside = join(dir, 'outside')
  writeFileSync(outside, 'keep me')
  const tree = join(dir, 'data')
  mkdirSync(join(tree, 'spool', 'records'), { recursive: true })
  writeFileSync(join(tree, 'spool', 'records', 'a'), 'aaaa')
  writeFileSync(join(tree, 'spool', 'b'), 'bb')
  symlinkSync(outside, join(tree, 'link'))
  t.same(wipeTree(tree, true), { files: 3, bytes: 6 })
  t.ok(existsSync(tree), 'kept, empty')
  t.equal(readFileSync(outside, 'utf8'), 'keep me', 'the link’s target untouched')
  t.same(wipeTree(join(dir, 'absent')), { files: 0, bytes: 0 })
  wipeTree(tree)
  t.notOk(existsSync(tree))
})
