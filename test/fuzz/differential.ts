import { execFileSync } from 'node:child_process'
import fc from 'fast-check'
import libmime from 'libmime'
import { parseParams } from '../../firmware/mime/params.ts'
import { decodeWords } from '../../firmware/mime/words.ts'
import { readZip, type ZipEntry } from '../../firmware/policy/zip.ts'
import { pythonZipOne } from '../helpers/py-zip.ts'
import { mutated, target, ZIP, zipWorst, type Target } from './inputs.ts'

/** Text split into RFC 2047 words at any byte (mid-character and mid-quantum, as mailers do), B or Q, between plain words. */
const encodedWords = fc
  .tuple(
    fc.array(fc.constantFrom('有', '價', '證', '券', '月', '對', '帳', '單', 'a', 'Z', '0', ' ', '_', '=', '?', 'é'), { minLength: 1, maxLength: 24 }),
    fc.array(fc.nat(40), { maxLength: 5 }),
    fc.constantFrom('B', 'Q'),
    fc.constantFrom('Dear ', '', 'Re: '),
  )
  .map(([chars, cuts, enc, prefix]) => {
    const bytes = Buffer.from(chars.join(''), 'utf8')
    const at = [...new Set(cuts.map((c) => c % bytes.length).filter((c) => c > 0))].sort((a, b) => a - b)
    const pieces = [0, ...at].map((from, i) => bytes.subarray(from, at[i] ?? bytes.length))
    const word = (b: Buffer) =>
      enc === 'B'
        ? `=?UTF-8?B?${b.toString('base64')}?=`
        : `=?UTF-8?Q?${[...b].map((x) => (/[A-Za-z0-9]/.test(String.fromCharCode(x)) ? String.fromCharCode(x) : `=${x.toString(16).toUpperCase().padStart(2, '0')}`)).join('')}?=`
    return prefix + pieces.map(word).join(' ')
  })

/** A Content-Disposition with a file name in RFC 2231 sections, percent-encoded UTF-8 cut at any byte. */
const rfc2231Value = fc
  .tuple(
    fc.array(fc.constantFrom('有', '價', '證', '券', 'a', '-', '1', ' ', 'é'), { minLength: 1, maxLength: 16 }),
    fc.array(fc.nat(40), { maxLength: 4 }),
    fc.boolean(),
  )
  .map(([chars, cuts, quoted]) => {
    const name = Buffer.from(`${chars.join('')}.pdf`, 'utf8')
    const at = [...new Set(cuts.map((c) => c % name.length).filter((c) => c > 0))].sort((a, b) => a - b)
    const pieces = [0, ...at].map((from, i) => name.subarray(from, at[i] ?? name.length))
    const pct = (b: Buffer) => [...b].map((x) => `%${x.toString(16).toUpperCase().padStart(2, '0')}`).join('')
    const section = (b: Buffer, i: number) => {
      const v = `${i === 0 ? "utf-8''" : ''}${pct(b)}`
      return `filename*${i}*=${quoted ? `"${v}"` : v}`
    }
    return `attachment; ${pieces.map(section).join('; ')}`
  })

/**
 * Python's zipfile over one archive (a process each, run synchronously as a target must): each
 * entry's raw name bytes and flag bits as the central directory Python trusts gives them, or
 * the error that stops Python opening it.
 */
/** Python's zipfile's reading of an archive in our reader's shape, or its error. */
function pythonZipEntries(zip: Buffer): ZipEntry[] | string {
  const r = pythonZipOne(zip)
  return 'error' in r ? r.error : r.entries.map(([name, encrypted]) => ({ name, encrypted }))
}

/** Well-formed archives as Python writes them: deflated files under a folder, once with ZIP64 records forced. */
const PY_ZIPS = (
  JSON.parse(
    execFileSync('/usr/bin/python3', [
      '-I',
      '-S',
      '-c',
      `
import base64, io, json, zipfile
def archive(**kw):
    b = io.BytesIO()
    with zipfile.ZipFile(b, 'w', zipfile.ZIP_DEFLATED) as z:
        z.writestr('folder/', b'')
        z.writestr('folder/statement.pdf', b'%PDF-1.4 ' * 40)
        with z.open('notes.txt', 'w', **kw) as f:
            f.write(b'notes')
    return base64.b64encode(b.getvalue()).decode()
print(json.dumps([archive(), archive(force_zip64=True)]))
`,
    ]).toString(),
  ) as string[]
).map((b) => Buffer.from(b, 'base64'))

/** #34: the same input through our parser and an independent reader (libmime, Python's zipfile). */
export const DIFFERENTIAL: Target<unknown>[] = [
  target({
    name: 'RFC 2047 encoded words against libmime (decodeWords)',
    differential: true,
    input: encodedWords,
    run: (s: string) => {
      const ours = decodeWords(s)
      const theirs = libmime.decodeWords(s)
      if (ours !== theirs) throw new Error(`decodeWords ${JSON.stringify(s)}: ours ${JSON.stringify(ours)}, libmime ${JSON.stringify(theirs)}`)
    },
    worst: (n: number) => '=?UTF-8?B?5p?= =?UTF-8?B?yJ?= '.repeat(n / 32),
  }),
  target({
    name: 'parameters, RFC 2231 continuations against libmime (parseParams)',
    differential: true,
    input: rfc2231Value,
    run: (s: string) => {
      const ours = parseParams(s)
      const theirs = libmime.parseHeaderValue(s)
      if (ours.ambiguity) throw new Error(`parseParams ${JSON.stringify(s)}: refused a well-formed value (${ours.ambiguity})`)
      if (ours.value !== theirs.value || ours.params.filename !== theirs.params.filename)
        throw new Error(`parseParams ${JSON.stringify(s)}: ours ${JSON.stringify(ours)}, libmime ${JSON.stringify(theirs)}`)
    },
    worst: (n: number) =>
      `attachment${Array.from({ length: n / 20 }, (_, i) => `; filename*${i}*=%E6%9C%89`).join('')}`.replace('filename*0*=', "filename*0*=utf-8''"),
  }),
  // #34: what the box passes, Python's zipfile reads the same way (names and encryption, entry for
  // entry); an archive Python cannot open has nothing to extract. The box may refuse more.
  target({
    name: "ZIP directory against Python's zipfile (readZip)",
    differential: true,
    runs: 60,
    input: fc.oneof(mutated(fc.constant(ZIP)), mutated(fc.constantFrom(...PY_ZIPS))),
    run: (b: Buffer) => {
      const ours = readZip(b)
      if (!ours.ok) {
        if ([ZIP, ...PY_ZIPS].some((z) => z.equals(b))) throw new Error(`readZip refused a well-formed archive: ${ours.reason}`)
        return
      }
      const theirs = pythonZipEntries(b)
      if (typeof theirs !== 'string' && JSON.stringify(theirs) !== JSON.stringify(ours.entries))
        throw new Error(`readZip ${b.toString('base64')}: ours ${JSON.stringify(ours.entries)}, zipfile ${JSON.stringify(theirs)}`)
    },
    worst: zipWorst,
  }),
]
