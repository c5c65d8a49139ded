import fc from 'fast-check'
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js'
import t from 'tap'
import { COPIED_FROM, feedDataStream, LIBRARY_FEED, librarySmtpServerVersion } from '../../firmware/smtp-data-scan.ts'
import '../../firmware/smtp-listener.ts'

/*
 * #35: the DATA reader with a native search decides where a message ends exactly as smtp-server's own.
 * Differential: the same input, cut into the same chunks, through the library's function and ours —
 * the same bytes out of the data stream, the same count, the same commands read after the end of data
 * (an early end would let a client smuggle commands, RFC 5321 §4.5.2), the same bytes held back.
 */

interface Outcome {
  data: string
  dataBytes: number
  ended: boolean
  commands: string[]
  held: string
}

async function read(feed: typeof LIBRARY_FEED, chunks: Buffer[]): Promise<Outcome> {
  const s = new SMTPStream()
  s._feedDataStream = feed
  const commands: string[] = []
  s.oncommand = (cmd: Buffer, next?: () => void) => {
    commands.push(cmd.toString('latin1'))
    next?.()
  }
  const ds = s.startDataMode()
  const out: Buffer[] = []
  let ended = false
  ds.on('data', (b: Buffer) => out.push(b))
  ds.on('end', () => {
    ended = true
    s.continue()
  })
  for (const c of chunks) await new Promise<void>((r, j) => s.write(c, (err) => (err ? j(err) : r())))
  // Pending escapes are fed on later turns of the event loop: let them run out before ending.
  for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r))
  await new Promise<void>((r) => s.end(r))
  const held = s._lastBytes ? s._lastBytes.toString('latin1') : ''
  return { data: Buffer.concat(out).toString('latin1'), dataBytes: s.dataBytes, ended, commands, held }
}

const token = fc.constantFrom('a', 'bc', '.', '..', '...', '\r\n', '\n', '\r', '\r\n.', '\r\n..', '.\r\n', '\r\n.\r\n', 'x'.repeat(40), '\r\n.x')
const message = fc.tuple(fc.array(token, { maxLength: 40 }), fc.constantFrom('', '\r\n.\r\n', '\r\n.\r\nQUIT\r\n', '\r\n.\r\nRSET\r\nNOOP\r\n'))

/** Cuts `input` at the given points (each taken modulo its length). */
function cut(input: Buffer, points: number[]): Buffer[] {
  const at = [...new Set(points.map((p) => p % (input.length + 1)))].sort((a, b) => a - b)
  const parts: Buffer[] = []
  let from = 0
  for (const p of [...at, input.length]) {
    if (p > from) parts.push(input.subarray(from, p))
    from = Math.max(from, p)
  }
  return parts
}

t.test('installed on the smtp-server it was copied from, and only there', async (t) => {
  t.equal(librarySmtpServerVersion(), COPIED_FROM, 'an update of smtp-server must compare its _feedDataStream with ours first')
  // eslint-disable-next-line @typescript-eslint/unbound-method
  t.equal(SMTPStream.prototype._feedDataStream, feedDataStream, 'importing the listener puts it in place')
})

t.test('the same outcome as the library for random messages cut into random chunks', async (t) => {
  let ended = 0
  await fc.assert(
    fc.asyncProperty(message, fc.array(fc.nat(), { maxLength: 8 }), async ([tokens, end], points) => {
      const input = Buffer.from(tokens.join('') + end, 'latin1')
      const chunks = cut(input, points)
      const ours = await read(feedDataStream, chunks)
      const theirs = await read(LIBRARY_FEED, chunks)
      if (ours.ended) ended++
      if (JSON.stringify(ours) !== JSON.stringify(theirs))
        throw new Error(`differs for ${JSON.stringify(chunks.map(String))}: ${JSON.stringify({ ours, theirs })}`)
    }),
    { numRuns: 600 },
  )
  t.ok(ended > 100 && ended < 600, `600 messages the same both ways; ${ended} of them ended within their input`)
})

t.test('known cases: escapes removed, the end found across a cut, commands after it read as commands', async (t) => {
  const body = 'line one\r\n..dot line\r\n.\r\nQUIT\r\n'
  for (const at of [0, 1, 10, 11, 12, 21, 22, 23, 24, 25]) {
    const input = Buffer.from(body, 'latin1')
    const r = await read(feedDataStream, cut(input, [at]))
    t.same(r, { data: 'line one\r\n.dot line\r\n', dataBytes: 21, ended: true, commands: ['QUIT'], held: '' }, `cut at ${at}`)
  }
  const big = Buffer.from(`${'A'.repeat(76)}\r\n`.repeat(20_000), 'latin1')
  const r = await read(feedDataStream, [big, Buffer.from('.\r\n')])
  t.equal(r.data.length, big.length, 'a 1.5 MB body without dots passes whole')
  t.ok(r.ended)
})
