import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { decodeRecord, writeRecord, type SpooledMail } from '../../../firmware/spool/record.ts'

// M10, S9: the record on disk decrypts to the envelope and message written; #35: in as few writes as its slices.
const dir = mkdtempSync(join(tmpdir(), 'sg-record-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

const keyRef = { epochKeyIv: 'aXY=', epochKeyCt: 'Y3Q=', salt: 'c2FsdA==' }
const mailOf = (bytes: number): SpooledMail => ({
  envelope: {
    id: 'REC1',
    mailFrom: 's@bank.example',
    rcptTo: ['c@example.net'],
    account: undefined,
    clientAddress: '127.0.0.1',
    tls: undefined,
    receivedAt: 1,
  },
  message: randomBytes(bytes),
})

/** The file handle Node gives, with its gathered writes counted and, if asked, cut short or failed as a kernel may. */
function counted(fh: FileHandle, opts: { cap?: number; fail?: NodeJS.ErrnoException } = {}) {
  const calls = { writev: 0, write: 0 }
  const handle = new Proxy(fh, {
    get(target, prop) {
      if (prop === 'write') {
        calls.write++
        return target.write.bind(target)
      }
      if (prop !== 'writev') return Reflect.get(target, prop, target) as unknown
      return async (parts: Buffer[]) => {
        calls.writev++
        if (opts.fail) throw opts.fail
        if (opts.cap === undefined) return target.writev(parts)
        // A short write: only the first `cap` bytes of what was asked reach the file.
        const head = Buffer.concat(parts).subarray(0, opts.cap)
        const { bytesWritten } = await target.write(head)
        return { bytesWritten, buffers: parts }
      }
    },
  })
  return { handle, calls }
}

async function writeAndRead(name: string, mail: SpooledMail, opts: { cap?: number } = {}) {
  const key = randomBytes(32)
  const path = join(dir, name)
  const fh = await open(path, 'wx')
  const { handle, calls } = counted(fh, opts)
  let written: number
  try {
    written = await writeRecord(handle, mail, { id: mail.envelope.id, epoch: 'e1', created: 1 }, key, keyRef)
  } finally {
    await fh.close()
  }
  return { written, calls, size: statSync(path).size, back: decodeRecord(readFileSync(path), key) }
}

t.test('a 60 KB statement is one gathered write, and reads back as written', async (t) => {
  const mail = mailOf(60 * 1024)
  const r = await writeAndRead('small', mail)
  t.equal(r.calls.writev, 1, 'header, envelope, message, final block and tag in one write')
  t.equal(r.calls.write, 0)
  t.equal(r.written, r.size, 'the bytes counted are the bytes in the file')
  t.same(r.back.envelope, JSON.parse(JSON.stringify(mail.envelope)))
  t.ok(r.back.message.equals(mail.message))
})

t.test('a 2.5 MB statement goes out a slice (1 MiB) at a time: three writes', async (t) => {
  const mail = mailOf(2.5 * 1024 * 1024)
  const r = await writeAndRead('large', mail)
  t.equal(r.calls.writev, 3)
  t.ok(r.back.message.equals(mail.message))
})

t.test('a write the disk takes only part of is carried on from where it stopped', async (t) => {
  const mail = mailOf(10_000)
  const r = await writeAndRead('short', mail, { cap: 777 })
  t.ok(r.calls.writev > 10, `${r.calls.writev} writes of at most 777 bytes`)
  t.equal(r.written, r.size)
  t.same(r.back.envelope, JSON.parse(JSON.stringify(mail.envelope)))
  t.ok(r.back.message.equals(mail.message), 'nothing lost or repeated at the cuts')
})

t.test('a failing write (disk full) is thrown to the caller, who removes the file', async (t) => {
  const fh = await open(join(dir, 'full'), 'wx')
  const enospc = Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' })
  const { handle } = counted(fh, { fail: enospc })
  await t.rejects(writeRecord(handle, mailOf(1000), { id: 'REC1', epoch: 'e1', created: 1 }, randomBytes(32), keyRef), { code: 'ENOSPC' })
  await fh.close()
})
