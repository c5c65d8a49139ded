import t from 'tap'
import { GroupCommit } from '../../../hal/storage/group.ts'

const later = () => new Promise<void>((r) => setTimeout(r, 5))

t.test('callers arriving during a run share the next one; each resolves after a run that holds it', async (t) => {
  const runs: number[][] = []
  const group = new GroupCommit<number>(async (items) => {
    runs.push(items)
    await later()
  })
  const first = group.add(1)
  const rest = [group.add(2), group.add(3), group.add(4)]
  await Promise.all([first, ...rest])
  t.same(runs, [[1], [2, 3, 4]], 'the first runs alone, the three that came meanwhile share one run')
  await group.add(5)
  t.same(runs.at(-1), [5], 'after a quiet moment a caller gets a run of its own at once')
})

t.test('gather: callers ready in the same turn share even the first run', async (t) => {
  let runs = 0
  const group = new GroupCommit<void>(async () => void runs++, { gather: true })
  await Promise.all([group.add(), group.add(), group.add()])
  t.equal(runs, 1)
})

t.test('a failed run fails exactly its callers; the next ones get a fresh run', async (t) => {
  let fail = true
  const group = new GroupCommit<string>(async (items) => {
    await later()
    if (fail && items.includes('a')) throw new Error('disk full')
  })
  const a = group.add('a')
  const b = group.add('b')
  const c = group.add('c')
  await t.rejects(a, /disk full/)
  await t.resolves(b)
  await t.resolves(c)
  fail = false
  await t.resolves(group.add('a'))
  await group.idle()
})

t.test('idle waits for everything queued and running', async (t) => {
  const done: number[] = []
  const group = new GroupCommit<number>(async (items) => {
    await later()
    done.push(...items)
  })
  void group.add(1)
  void group.add(2)
  await group.idle()
  t.same(done, [1, 2])
})
