import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync, zstdCompressSync } from 'node:zlib'
import fc from 'fast-check'
import t from 'tap'
import { decodedBody, parseMessage, walk } from '../../../firmware/mime/tree.ts'
import { declares, sniff } from '../../../firmware/policy/sniff.ts'
import { FIXTURES } from '../../fixtures/messages.ts'
import { tempDir } from '../../helpers/box.ts'
import { pagePdfs, zipFixture } from '../../helpers/pdf.ts'

/**
 * #32 (M13): a part is judged by its bytes. The sniffing is compared with an
 * independent implementation, Debian's `file --mime-type`, on the fixtures'
 * leaves and on generated parts whose declared type is wrong.
 */

/** `file --mime-type` of each buffer, in one run of `file`. */
function fileSays(dir: string, samples: Buffer[]): string[] {
  const paths = samples.map((b, i) => {
    const p = join(dir, `s${i}`)
    writeFileSync(p, b)
    return p
  })
  return execFileSync('file', ['-b', '--mime-type', ...paths], { encoding: 'utf8' })
    .trim()
    .split('\n')
}

const OURS = new Set([
  'application/pdf',
  'application/zip',
  'application/x-7z-compressed',
  'application/x-rar',
  'application/gzip',
  'application/x-xz',
  'application/zstd',
  'application/x-tar',
  'application/x-bzip2',
])

/** Python's own writers for the formats node has none of. */
function pythonMade(): Record<string, Buffer> {
  const out = execFileSync(
    '/usr/bin/python3',
    [
      '-c',
      'import bz2,lzma,tarfile,io,json,base64\n' +
        'data=b"statement for customer\\n"*50\n' +
        't=io.BytesIO()\n' +
        'with tarfile.open(fileobj=t,mode="w",format=tarfile.USTAR_FORMAT) as tf:\n' +
        '  i=tarfile.TarInfo("statement.txt"); i.size=len(data); tf.addfile(i,io.BytesIO(data))\n' +
        'print(json.dumps({k: base64.b64encode(v).decode() for k,v in {"bzip2":bz2.compress(data),"xz":lzma.compress(data),"tar":t.getvalue()}.items()}))',
    ],
    { encoding: 'utf8' },
  )
  return Object.fromEntries(Object.entries(JSON.parse(out) as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64')]))
}

async function corpus(dir: string): Promise<Record<string, Buffer>> {
  const samples: Record<string, Buffer> = {}
  // Every leaf of the signing fixtures, decoded.
  for (const [name, raw] of Object.entries(FIXTURES)) {
    let top
    try {
      top = parseMessage(raw)
    } catch {
      continue // refused as a whole (bare LF line endings): no part of it is judged
    }
    for (const node of walk(top)) if (!node.children.length) samples[`${name} / part ${node.path || '1'}`] = decodedBody(raw, node)
  }
  for (const [name, pdf] of Object.entries(await pagePdfs(dir))) samples[`pdf ${name}`] = pdf
  samples['zip plain'] = await zipFixture(dir, false)
  samples['zip encrypted bit'] = await zipFixture(dir, true)
  samples['zip, data before it'] = Buffer.concat([Buffer.from('junk before the archive\n'), await zipFixture(dir, false)])
  samples['zip empty'] = Buffer.concat([Buffer.from('PK\x05\x06'), Buffer.alloc(18)])
  samples.gzip = gzipSync('statement for customer\n'.repeat(50))
  samples.zstd = zstdCompressSync('statement for customer\n'.repeat(50))
  for (const [k, v] of Object.entries(pythonMade())) samples[k] = v
  samples['7z header'] = Buffer.concat([Buffer.from('377abcaf271c0004', 'hex'), randomBytes(64)])
  samples['rar header'] = Buffer.concat([Buffer.from('Rar!\x1a\x07\x00', 'latin1'), randomBytes(64)])
  samples['pdf header after 100 bytes'] = Buffer.concat([Buffer.alloc(100, 'x'), Buffer.from('%PDF-1.4\n1 0 obj\n')])
  samples['text mentioning a ZIP end record'] = Buffer.concat([
    Buffer.from('hello\n'.repeat(3)),
    Buffer.from('PK\x05\x06'),
    Buffer.alloc(18),
    Buffer.from('more\n'),
  ])
  samples['plain text'] = Buffer.from('Dear customer, your statement is attached.\n')
  samples['Chinese text'] = Buffer.from('您好，本月對帳單如附件。\n')
  samples.html = Buffer.from('<html><body><p>statement</p></body></html>\n')
  samples['random bytes'] = randomBytes(4096)
  return samples
}

t.test('differential: on every leaf of the fixtures and each format, the sniffing names what `file --mime-type` names', async (t) => {
  const dir = tempDir(t, 'sg-sniff-')
  const samples = await corpus(dir)
  const names = Object.keys(samples)
  const theirs = fileSays(dir, Object.values(samples))
  let agreed = 0
  names.forEach((name, i) => {
    const ours = sniff(samples[name]!).map((f) => f.mime)
    const file = theirs[i]!
    if (OURS.has(file)) t.ok(ours.includes(file), `${name}: file says ${file}, the box ${ours.join(', ') || 'nothing it judges'}`)
    else t.same(ours, [], `${name}: file says ${file}, not a format the box judges`)
    agreed++
  })
  t.ok(agreed >= 30, `${agreed} samples compared`)
})

t.test('where the sniffing differs from `file`, on purpose and on the safe side', async (t) => {
  const dir = tempDir(t, 'sg-sniff-')
  const late = Buffer.concat([Buffer.alloc(600, 'x'), Buffer.from('%PDF-1.4\n1 0 obj\n')])
  t.equal(fileSays(dir, [late])[0], 'text/plain', '`file` looks for the PDF header in the first 256 bytes')
  t.same(
    sniff(late).map((f) => f.mime),
    ['application/pdf'],
    'the box where Acrobat and pdf.js do: the first 1,024',
  )
  t.same(sniff(Buffer.concat([Buffer.alloc(1100, 'x'), Buffer.from('%PDF-1.4')])), [], 'not past 1,024 bytes')
  const zip = await zipFixture(dir, false)
  t.same(
    sniff(zip).map((f) => f.mime),
    ['application/zip'],
    'a ZIP holding a PDF uncompressed (its header within the first KiB) is a ZIP, as `file` says',
  )
  const polyglot = Buffer.concat([(await pagePdfs(dir))['plain-page']!, zip])
  t.same(
    sniff(polyglot).map((f) => f.mime),
    ['application/pdf', 'application/zip'],
    'a PDF with a ZIP after it is both, and each rule judges it (`file` names the first)',
  )
  t.ok(declares('application/vnd.openxmlformats-officedocument.wordprocessingml.document', 'a.docx', sniff(zip)[0]!), 'a .docx is a ZIP it declares')
  t.ok(declares('application/octet-stream', 'statement.pdf', sniff(late)[0]!), 'application/octet-stream named .pdf declares a PDF')
  t.notOk(declares('text/plain', 'statement.pdf', sniff(late)[0]!))
})

t.test('differential: generated parts with wrong declared types and any transfer encoding are sniffed by their decoded bytes', async (t) => {
  const dir = tempDir(t, 'sg-sniff-')
  const samples = await corpus(dir)
  const names = Object.keys(samples).filter((n) => !n.includes(' / part'))
  const theirs = Object.fromEntries(
    fileSays(
      dir,
      names.map((n) => samples[n]!),
    ).map((m, i) => [names[i]!, m]),
  )
  fc.assert(
    fc.property(
      fc.constantFrom(...names),
      fc.constantFrom('text/plain', 'text/html; charset=utf-8', 'image/png', 'application/octet-stream', 'application/pdf', 'application/zip'),
      fc.constantFrom('base64', 'quoted-printable'),
      fc.boolean(),
      (name, declared, cte, attachment) => {
        const bytes = samples[name]!
        const body = cte === 'base64' ? bytes.toString('base64').replace(/.{76}/g, '$&\r\n') : qp(bytes)
        const raw = Buffer.from(
          'From: a@bank.example\r\nTo: c@example.net\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' +
            `--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: ${declared}\r\n${attachment ? 'Content-Disposition: attachment; filename="x.dat"\r\n' : ''}` +
            `Content-Transfer-Encoding: ${cte}\r\n\r\n${body}\r\n--b--\r\n`,
          'latin1',
        )
        const leaf = [...walk(parseMessage(raw))].find((n) => n.path === '2')!
        const ours = sniff(decodedBody(raw, leaf)).map((f) => f.mime)
        const file = theirs[name]!
        if (OURS.has(file) ? !ours.includes(file) : ours.length) throw new Error(`${name} as ${declared} (${cte}): file ${file}, box ${ours.join(', ')}`)
      },
    ),
    { numRuns: 400 },
  )
})

/** Quoted-printable of any bytes (RFC 2045 §6.7), lines at most 76. */
function qp(b: Buffer): string {
  let out = ''
  let line = ''
  for (const c of b) {
    const s = (c >= 33 && c <= 126 && c !== 61) || c === 32 ? String.fromCharCode(c) : `=${c.toString(16).toUpperCase().padStart(2, '0')}`
    if (line.length + s.length > 75) {
      out += `${line}=\r\n`
      line = ''
    }
    line += s
  }
  return out + line
}
