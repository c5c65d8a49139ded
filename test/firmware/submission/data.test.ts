import { Readable } from 'node:stream'
import t from 'tap'
import { findBareNewline, readMessage } from '../../../firmware/submission/data.ts'

const read = (chunks: string[], bareLineFeed: 'reject' | 'normalize' = 'reject', maxBytes = 1 << 20) =>
  readMessage(Readable.from(chunks.map((c) => Buffer.from(c, 'latin1'))), { maxBytes, bareLineFeed })

t.test('CRLF-only content passes through unchanged, whatever the chunking', async (t) => {
  const text = 'A: b\r\n\r\nline\r\nline2\r\n'
  for (let cut = 0; cut <= text.length; cut++) {
    const out = await read([text.slice(0, cut), text.slice(cut)])
    t.equal(out.toString('latin1'), text, `split at ${cut}`)
  }
})

t.test('a bare LF or CR is found wherever the chunk boundary falls', async (t) => {
  for (const bad of ['a\nb\r\n', 'a\rb\r\n', 'a\r\r\n', '\n']) {
    for (let cut = 0; cut <= bad.length; cut++) {
      await t.rejects(read([bad.slice(0, cut), bad.slice(cut)]), { code: 'EDATA_BARE_NEWLINE' }, `${JSON.stringify(bad)} split at ${cut}`)
    }
  }
  t.equal(findBareNewline(Buffer.from('\nx'), true), -1, 'LF completing a CR from the previous chunk')
  t.equal(findBareNewline(Buffer.from('x'), true), 0, 'CR from the previous chunk not followed by LF')
  t.equal(findBareNewline(Buffer.from('ab\r'), false), -1, 'a trailing CR waits for the next chunk')
})

t.test('normalize rewrites bare CR and LF to CRLF across chunk boundaries', async (t) => {
  const out = await read(['a\nb\rc\r', '\nd\r', 'e\r\n'], 'normalize')
  t.equal(out.toString('latin1'), 'a\r\nb\r\nc\r\nd\r\ne\r\n')
})

t.test('NUL and size are refused, and the stream is still read to its end', async (t) => {
  const chunks = ['ok\r\n', 'bad\0\r\n', 'more\r\n']
  let consumed = 0
  const stream = Readable.from(chunks.map((c) => Buffer.from(c))).on('data', () => consumed++)
  await t.rejects(readMessage(stream, { maxBytes: 100, bareLineFeed: 'reject' }), { code: 'EDATA_NUL', responseCode: 550 })
  t.equal(consumed, 3)
  await t.rejects(read(['x'.repeat(60), 'y'.repeat(60)], 'reject', 100), { code: 'ESIZE_LIMIT', responseCode: 552 })
})
