import fc from 'fast-check'
import t from 'tap'
import { spliceMessage, type Splice } from '../../../firmware/mime/edit.ts'
import { parseMessage, walk, type MimeNode } from '../../../firmware/mime/tree.ts'

// #34 parse once: a stage that edits bytes moves the tree instead of reading the mail again.
// Differential: the moved tree must be exactly what a fresh reading of the edited bytes gives.

const leaf = (i: number, body: string) => `Content-Type: text/${i % 2 ? 'html' : 'plain'}; charset=utf-8\r\nContent-ID: <p${i}>\r\n\r\n${body}\r\n`

/** A message: top fields, then a multipart/mixed of leaves and one nested multipart/alternative. */
function message(top: string[], bodies: string[], nested: string[]): Buffer {
  const inner = nested.length ? `--in\r\n${nested.map((b, i) => leaf(i + 100, b)).join('--in\r\n')}--in--\r\n` : ''
  const parts = bodies.map((b, i) => `--out\r\n${leaf(i, b)}`).join('')
  const alt = inner ? `--out\r\nContent-Type: multipart/alternative; boundary="in"\r\n\r\n${inner}` : ''
  return Buffer.from(
    `${top.join('')}From: statements@bank.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="out"\r\n\r\n` + `${parts}${alt}--out--\r\n`,
  )
}

const word = fc.stringMatching(/^[a-z0-9 ]{0,30}$/)
const field = fc.tuple(fc.constantFrom('X-A', 'X-B', 'Disposition-Notification-To', 'Keywords'), word).map(([k, v]) => `${k}: ${v}\r\n`)

t.test('edits of a read message: the moved tree equals a fresh reading of the edited bytes', async (t) => {
  fc.assert(
    fc.property(
      fc.array(field, { maxLength: 4 }),
      fc.array(word, { minLength: 1, maxLength: 4 }),
      fc.array(word, { maxLength: 3 }),
      fc.array(field, { maxLength: 2 }),
      fc.array(fc.nat(), { maxLength: 3 }),
      fc.array(word, { maxLength: 3 }),
      (top, bodies, nested, inserted, dropAt, replaced) => {
        const buf = message(top, bodies, nested)
        const tree = parseMessage(buf)
        const splices: Splice[] = []
        // Fields removed from the top header (not those that make its structure), others inserted before them.
        const removable = tree.headers.filter((h) => h.key.startsWith('x-') || h.key === 'keywords' || h.key === 'disposition-notification-to')
        const dropped = new Set(removable.length ? dropAt.map((n) => removable[n % removable.length]!) : [])
        for (const h of dropped) splices.push({ start: h.start, end: h.end, bytes: Buffer.alloc(0) })
        if (inserted.length) splices.push({ start: 0, end: 0, bytes: Buffer.from(inserted.join('')) })
        // Leaves replaced whole, as the tracking rewrite does (a new type and encoding).
        const leaves = [...walk(tree)].filter((n) => n.children.length === 0)
        replaced.forEach((b, i) => {
          const n = leaves[i % leaves.length]!
          if (splices.some((s) => s.start === n.start)) return
          const bytes = Buffer.from(
            `Content-ID: <r${i}>\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n${Buffer.from(b).toString('base64')}\r\n`,
          )
          splices.push({ start: n.start, end: n.end, bytes, entity: { mime: 'text/html', params: { charset: 'utf-8' }, cte: 'base64' } })
        })
        const out = spliceMessage(buf, tree, splices)
        const fresh = parseMessage(out.message)
        if (!sameTree(out.tree, fresh)) throw new Error(`moved tree differs from a fresh reading of:\n${out.message.toString('latin1')}`)
      },
    ),
    { numRuns: 300 },
  )
  t.pass('300 random messages and edits')
})

t.test('a splice that overlaps another is a bug of the caller, refused', async (t) => {
  const buf = message([], ['a'], [])
  const tree = parseMessage(buf)
  const h = tree.headers[0]!
  t.throws(
    () =>
      spliceMessage(buf, tree, [
        { start: h.start, end: h.end, bytes: Buffer.alloc(0) },
        { start: h.start + 1, end: h.end + 2, bytes: Buffer.alloc(0) },
      ]),
    /overlapping splices/,
  )
})

t.test('no splice: the same bytes and an equal tree', async (t) => {
  const buf = message(['X-A: 1\r\n'], ['a', 'b'], ['c'])
  const tree = parseMessage(buf)
  const out = spliceMessage(buf, tree, [])
  t.same(out.message, buf)
  t.same(out.tree, tree)
})

function sameTree(a: MimeNode, b: MimeNode): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}
