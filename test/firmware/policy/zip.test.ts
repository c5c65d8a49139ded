import { spawn } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { readZip } from '../../../firmware/policy/zip.ts'
import { tempDir } from '../../helpers/box.ts'
import { run } from '../../helpers/hsm.ts'
import { pythonZip, type PyZipReading } from '../../helpers/py-zip.ts'

type Reading = PyZipReading

/** Info-ZIP's zipinfo -v: each entry's name and "file security status". */
async function zipinfo(file: string): Promise<Reading> {
  const out = await run('zipinfo', ['-v', file]).then(
    (r) => r.stdout,
    (e: { stdout: string; code: number }) => (e.code === 1 ? e.stdout : undefined), // 1: warnings, listing given
  )
  if (out === undefined) return { error: 'zipinfo failed' }
  const entries: [string, boolean][] = []
  for (const block of out.split(/^Central directory entry #\d+:\n-+\n\n/m).slice(1)) {
    // A note such as "There are an extra 16 bytes preceding this file." may come before the name.
    const name = block
      .split('\n')
      .find((l) => l.trim() && !/^ {2}There (is|are) /.test(l))!
      .replace(/^ {2}/, '')
    const sec = /file security status:\s+(.*)/.exec(block)?.[1]
    entries.push([name, sec === 'encrypted'])
  }
  return { entries }
}

async function archives(dir: string): Promise<Record<string, Buffer>> {
  const src = join(dir, 'src')
  mkdirSync(join(src, 'folder'), { recursive: true })
  writeFileSync(join(src, 'statement.pdf'), '%PDF-1.4 ' + 'statement data '.repeat(40))
  writeFileSync(join(src, 'notes.txt'), 'notes')
  writeFileSync(join(src, 'folder', 'inner.pdf'), '%PDF-1.4 inner')
  const zip = async (name: string, args: string[], stdin?: string) => {
    const out = join(dir, `${name}.zip`)
    if (stdin === undefined) await run('zip', ['-q', ...args, out, ...(args.includes('-r') ? ['.'] : ['statement.pdf', 'notes.txt'])], { cwd: src })
    else {
      await new Promise<void>((resolve, reject) => {
        const p = spawn('zip', ['-q', ...args, out, '-'], { cwd: src })
        p.on('close', (c) => (c === 0 ? resolve() : reject(new Error(`zip exited ${c}`))))
        p.stdin.end(stdin)
      })
    }
    return readFileSync(out)
  }
  return {
    'plain, deflated': await zip('plain', []),
    'plain, stored': await zip('stored', ['-0']),
    'encrypted, deflated': await zip('enc', ['-P', 'A123456789']),
    'encrypted, stored': await zip('enc0', ['-0', '-P', 'A123456789']),
    'encrypted, with a directory': await zip('encdir', ['-r', '-P', 'A123456789']),
    'encrypted, streamed (data descriptor)': await zip('stream', ['-P', 'pw'], '%PDF-1.4 from stdin'),
    'encrypted, ZIP64': await zip('z64', ['-fz', '-P', 'pw']),
    'encrypted, with a comment': await (async () => {
      const a = await zip('comment', ['-P', 'pw'])
      return withComment(a, 'statement archive')
    })(),
  }
}

/** Sets the archive comment (the end record's last field). */
function withComment(zip: Buffer, comment: string): Buffer {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]))
  const head = Buffer.from(zip.subarray(0, eocd + 22))
  head.writeUInt16LE(Buffer.byteLength(comment), eocd + 20)
  return Buffer.concat([head, Buffer.from(comment)])
}

function patch(zip: Buffer, sig: number, offset: number, f: (v: number) => number, all = true): Buffer {
  const c = Buffer.from(zip)
  const s = Buffer.alloc(4)
  s.writeUInt32LE(sig)
  for (let i = c.indexOf(s); i >= 0; i = all ? c.indexOf(s, i + 4) : -1) c.writeUInt16LE(f(c.readUInt16LE(i + offset)) & 0xffff, i + offset)
  return c
}

t.test('#14 finding 2: an end record claiming no entries over an intact directory hides nothing', async (t) => {
  const zips = await archives(tempDir(t))
  const plain = zips['plain, deflated']!
  const zero = patch(
    patch(plain, 0x06054b50, 8, () => 0),
    0x06054b50,
    10,
    () => 0,
  )
  const dir = tempDir(t)
  writeFileSync(join(dir, 'zero.zip'), zero)
  const [py] = await pythonZip([zero])
  t.match(
    py,
    {
      entries: [
        ['statement.pdf', false],
        ['notes.txt', false],
      ],
    },
    'Python still lists the unencrypted statement',
  )
  t.match(readZip(zero), { ok: false, reason: /end record says 0 entries, the directory holds 2/ })
  t.match(readZip(plain), {
    ok: true,
    entries: [
      { name: 'statement.pdf', encrypted: false },
      { name: 'notes.txt', encrypted: false },
    ],
  })
})

t.test("ZIP differential with Python's zipfile and Info-ZIP's zipinfo: where the box finds every entry encrypted, so do both", async (t) => {
  const dir = tempDir(t)
  const bases = await archives(dir)
  const cases: { name: string; zip: Buffer }[] = Object.entries(bases).map(([name, zip]) => ({ name, zip }))
  const enc = bases['encrypted, deflated']!
  const plain = bases['plain, deflated']!
  // The ways readers can be made to disagree.
  cases.push(
    { name: 'encrypted in the directory only', zip: patch(plain, 0x02014b50, 8, (v) => v | 1) },
    { name: 'encrypted in the local headers only', zip: patch(plain, 0x04034b50, 6, (v) => v | 1) },
    { name: 'encrypted local, plain directory', zip: patch(enc, 0x02014b50, 8, (v) => v & ~1) },
    {
      name: 'a second end record in the comment',
      zip: withComment(enc, Buffer.concat([Buffer.from([0x50, 0x4b, 0x05, 0x06]), Buffer.alloc(18)]).toString('latin1')),
    },
    { name: 'data before the archive', zip: Buffer.concat([Buffer.from('%PDF-1.4 hidden\n'), enc]) },
    { name: 'an unencrypted entry hidden between entries', zip: hideEntry(enc, plain) },
    { name: 'truncated end record', zip: enc.subarray(0, enc.length - 5) },
  )
  let seed = 1414
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
  const names = Object.keys(bases)
  for (let i = 0; i < 200; i++) {
    const base = bases[names[Math.floor(random() * names.length)]!]!
    const c = Buffer.from(base)
    const kind = Math.floor(random() * 3)
    const at = Math.floor(random() * c.length)
    if (kind === 0) c[at] = c[at]! ^ (1 << Math.floor(random() * 8))
    const zip =
      kind === 1
        ? c.subarray(0, Math.floor(random() * c.length))
        : kind === 2
          ? Buffer.concat([c.subarray(0, 30), Buffer.from('PK\x03\x04'), c.subarray(30)])
          : c
    cases.push({ name: `mutation ${i}`, zip })
  }
  const py = await pythonZip(cases.map((c) => c.zip))
  const disagreements: string[] = []
  let allEncrypted = 0
  let refused = 0
  for (const [i, c] of cases.entries()) {
    const file = join(dir, `case-${i}.zip`)
    writeFileSync(file, c.zip)
    const box = readZip(c.zip)
    if (!box.ok) {
      refused++
      continue
    }
    if (!box.entries.filter((e) => !e.name.endsWith('/')).every((e) => e.encrypted)) continue
    allEncrypted++
    const info = await zipinfo(file)
    for (const [who, r] of [
      ['python', py[i]!],
      ['zipinfo', info],
    ] as const) {
      if ('error' in r) continue // the archive cannot be opened there: nothing to extract
      const files = r.entries.filter(([n]) => !n.endsWith('/'))
      const same = JSON.stringify(files.map(([n]) => n)) === JSON.stringify(box.entries.filter((e) => !e.name.endsWith('/')).map((e) => e.name))
      if (!same || files.some(([, e]) => !e)) disagreements.push(`${c.name}: ${who} reads ${JSON.stringify(r.entries)}`)
    }
  }
  t.comment(
    `ZIP differential: ${cases.length} archives, ${allEncrypted} judged all-encrypted by the box, ${refused} refused as malformed; disagreements: ${disagreements.length}`,
  )
  t.same(disagreements, [], 'no archive the box passes has an unencrypted or unlisted entry for Python or zipinfo')
  for (const [name, zip] of Object.entries(bases)) {
    const r = readZip(zip)
    t.ok(r.ok, `${name}: read`)
    if (r.ok)
      t.equal(
        r.entries.filter((e) => !e.name.endsWith('/')).every((e) => e.encrypted),
        name.startsWith('encrypted'),
        `${name}: judged right`,
      )
  }
  for (const n of [
    'encrypted in the directory only',
    'encrypted in the local headers only',
    'encrypted local, plain directory',
    'a second end record in the comment',
    'data before the archive',
    'an unencrypted entry hidden between entries',
  ]) {
    t.notOk(readZip(cases.find((c) => c.name === n)!.zip).ok, `${n}: refused as malformed`)
  }
})

/** Puts the plain archive's first entry (local header and data) in front of the encrypted archive, shifting its offsets: listed by no directory. */
function hideEntry(enc: Buffer, plain: Buffer): Buffer {
  const cd = plain.readUInt32LE(plain.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06])) + 16)
  const second = plain.indexOf(Buffer.from([0x50, 0x4b, 0x03, 0x04]), 4)
  const hidden = plain.subarray(0, second > 0 && second < cd ? second : cd)
  const out = Buffer.concat([hidden, enc])
  const shift = hidden.length
  const eocd = out.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]))
  out.writeUInt32LE(out.readUInt32LE(eocd + 16) + shift, eocd + 16)
  for (let i = out.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02])); i >= 0; i = out.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]), i + 4))
    out.writeUInt32LE(out.readUInt32LE(i + 42) + shift, i + 42)
  return out
}
