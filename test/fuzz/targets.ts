import fc from 'fast-check'
import libmime from 'libmime'
import { base32, unbase32 } from '../../hal/crypto/base32.ts'
import { children, certificateParts, keyUsage, read } from '../../hal/crypto/der-read.ts'
import { makeSelfSignedServerCert } from '../../hal/crypto/selfsigned.ts'
import { base64Problem, decodeQuotedPrintable } from '../../firmware/mime/encode.ts'
import { htmlText } from '../../firmware/mime/html.ts'
import { rewriteHtml } from '../../firmware/ledger/rewrite.ts'
import { parseParams } from '../../firmware/mime/params.ts'
import { MimeError } from '../../firmware/mime/header.ts'
import { parseMessage } from '../../firmware/mime/tree.ts'
import { decodeUtf7, decodeWords } from '../../firmware/mime/words.ts'
import { pdfEncryption } from '../../firmware/policy/pdf.ts'
import { findTaiwanIds, maskTaiwanIds } from '../../firmware/pii/taiwan-id.ts'
import { sniff } from '../../firmware/policy/sniff.ts'
import { readZip } from '../../firmware/policy/zip.ts'
import { relaxedBody, relaxedHeader } from '../../firmware/signing/dkim.ts'
import { ReplyReader } from '../../firmware/delivery/client.ts'
import { Classifier } from '../../firmware/return-path/classify.ts'
import { fieldBlocks } from '../../firmware/return-path/fields.ts'
import { reportOf } from '../../firmware/return-path/report.ts'
import { addressesIn, replyCodeIn, statusesIn } from '../../firmware/return-path/scan.ts'
import { mimeMessage } from '../helpers/mime.ts'

/**
 * The box's hand-written parsers of outside input, as fuzz targets (STYLE:
 * KumoMTA fuzzes its protocol parsers): each gets hostile input and may only
 * answer or fail with its own coded error, and each has a worst-case input
 * family for the doubling test (time linear in the input size).
 */
export interface Target<T> {
  name: string
  input: fc.Arbitrary<T>
  /** Runs the parser; throws only for a failure that is not the parser's own coded answer. */
  run(input: T): void
  /** Adversarial input of about `n` bytes, for timing. */
  worst(n: number): T
  /** Compares with an independent reader (libmime): not timed in the growth test, which its parser's own target is. */
  differential?: boolean
  /** Size for the doubling test when the default (512 KiB) is far beyond what the parser ever reads. */
  size?: number
}

/** Byte strings made of MIME-ish tokens, so that fuzzing reaches past the first check. */
const tokens = (words: readonly string[], max = 200) =>
  fc.array(fc.oneof(fc.constantFrom(...words), fc.string({ maxLength: 8 })), { maxLength: max }).map((ws) => ws.join(''))

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

/** A known-good input with a few bytes changed, inserted or cut. */
function mutated(seed: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  return fc.tuple(seed, fc.array(fc.tuple(fc.nat(), fc.nat(255), fc.constantFrom('flip', 'insert', 'cut')), { maxLength: 6 })).map(([b, edits]) => {
    let out = Buffer.from(b)
    for (const [pos, byte, how] of edits) {
      if (out.length === 0) break
      const at = pos % out.length
      if (how === 'flip') out[at] = byte
      else if (how === 'insert') out = Buffer.concat([out.subarray(0, at), Buffer.from([byte]), out.subarray(at)])
      else out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1 + (byte % 16))])
    }
    return out
  })
}

const coded = (fn: () => void, ok: (e: unknown) => boolean) => {
  try {
    fn()
  } catch (err) {
    if (!ok(err)) throw err
  }
}

export const CERT = Buffer.from(makeSelfSignedServerCert({ hostname: 'fuzz.example', addresses: ['127.0.0.1'] }).certificate.raw)
/** A small encrypted PDF written by hand, with its cross-reference offsets computed. */
export const PDF = (() => {
  const objs = ['1 0 obj << /Type /Catalog >> endobj\n', '2 0 obj << /Filter /Standard /V 2 /R 3 /O (o) /U (u) /P -4 >> endobj\n']
  let text = '%PDF-1.4\n'
  const offsets = objs.map((o) => {
    const at = text.length
    text += o
    return at
  })
  const xref = text.length
  text += `xref\n0 3\n0000000000 65535 f \n${offsets.map((o) => `${String(o).padStart(10, '0')} 00000 n \n`).join('')}trailer << /Root 1 0 R /Size 3 /Encrypt 2 0 R >>\nstartxref\n${xref}\n%%EOF\n`
  return Buffer.from(text, 'latin1')
})()
export const ZIP = Buffer.from(
  'UEsDBAoACQAAAD0Wel2Xo14WFwAAAAsAAAANABwAc3RhdGVtZW50LnBkZlVUCQADVZ4Ha1WeB2t1eAsAAQQAAAAABAAAAAC9u0RCYEwikIxNjfJJgN6jmR2AbXocqFBLBwiXo14WFwAAAAsAAABQSwECHgMKAAkAAAA9Fnpdl6NeFhcAAAALAAAADQAYAAAAAAABAAAApIEAAAAAc3RhdGVtZW50LnBkZlVUBQADVZ4Ha3V4CwABBAAAAAAEAAAAAFBLBQYAAAAAAQABAFMAAABuAAAAAAA=',
  'base64',
)

/** Keeps each target's input type to itself while they share one list. */
const target = <T>(x: Target<T>) => x as unknown as Target<unknown>

const classifier = new Classifier()
/** A report's parts as the lenient reader gives them, with `text` as the notice. */
const notice = (text: string) => reportOf({ headers: [['subject', 'Undelivered Mail']], parts: [{ type: 'text/plain', returned: false, headers: [], text }] })

export const TARGETS: Target<unknown>[] = [
  target({
    name: 'bounce notice text (reportOf: addresses, codes, segments)',
    input: tokens([
      '<',
      '>',
      '@',
      'a@b.example',
      'x.example',
      '\n',
      ' ',
      '550 ',
      '5.1.1',
      'Final-Recipient: rfc822; ',
      'Action: failed\n',
      'Received: x\n',
      ':',
    ]),
    run: (s: string) => void notice(s),
    worst: (n: number) => 'a@b.example c@d.example\n'.repeat(n / 24),
    size: 64 * 1024,
  }),
  target({
    name: 'DSN field blocks (fieldBlocks)',
    input: tokens(['Status:', ' 5.1.1', '\r\n', '\n', ' ', '\t', ':', 'x']),
    run: (s: string) => void fieldBlocks(s),
    worst: (n: number) => `Diagnostic-Code: smtp; x\n${' x\n'.repeat(n / 3)}`,
  }),
  target({
    name: 'scanners (addressesIn, statusesIn, replyCodeIn)',
    input: tokens(['@', '.', '5', '4', '1', ' ', 'a', '#', '-', '550']),
    run: (s: string) => {
      addressesIn(s)
      statusesIn(s)
      replyCodeIn(s)
    },
    worst: (n: number) => 'a@a.5.5.5 550'.repeat(n / 13),
  }),
  target({
    name: 'bounce classifier (classify over a long reply)',
    input: tokens(['user', ' unknown', 'mailbox', 'full', '5.1.1', ' ', 'spam', 'x']),
    run: (s: string) => void classifier.classify({ text: s }),
    worst: (n: number) => 'u'.repeat(n),
    size: 64 * 1024,
  }),
  target({
    name: 'MIME structure (parseMessage)',
    input: fc.oneof(
      mutated(mimeMessage),
      tokens(['--A', '\r\n', 'Content-Type: multipart/mixed; boundary=A', ': ', '\r\n\r\n', ' ', '=?', 'boundary="', ';', '"']).map((s) => Buffer.from(s)),
    ),
    run: (b: Buffer) =>
      coded(
        () => parseMessage(b),
        (e) => e instanceof MimeError,
      ),
    worst: (n: number) => Buffer.from(`Content-Type: multipart/mixed; boundary="A"\r\n\r\n${'--A\r\n\r\nx\r\n'.repeat(n / 12)}--A--\r\n`),
  }),
  target({
    name: 'header fields (parseMessage, many folded lines)',
    input: tokens(['Subject:', ' ', '\t', '\r\n', 'x', ':']).map((s) => Buffer.from(s)),
    run: (b: Buffer) =>
      coded(
        () => parseMessage(b),
        (e) => e instanceof MimeError,
      ),
    worst: (n: number) => Buffer.from(`Subject: x\r\n${' x\r\n'.repeat(n / 4)}\r\nbody\r\n`),
  }),
  target({
    name: 'RFC 2047 encoded words (decodeWords)',
    input: tokens(['=?', '?=', '?B?', '?Q?', 'UTF-8', 'big5', ' ', '_', '=E6', 'QUJD']),
    run: (s: string) => void decodeWords(s),
    worst: (n: number) => '=?UTF-8?Q?a'.repeat(n / 11),
  }),
  // #34: differential targets — the same well-formed input through an independent reader (libmime, nodemailer's).
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
  target({
    name: 'parameters, RFC 2231 (parseParams)',
    input: tokens([';', '=', '"', '\\', 'filename', '*0*', '*1', "utf-8''", '%E5', ' ', 'boundary']),
    run: (s: string) => void parseParams(s),
    worst: (n: number) => `text/plain${'; a*0*="x'.repeat(n / 10)}`,
  }),
  target({
    name: 'quoted-printable (decodeQuotedPrintable)',
    input: fc.uint8Array({ maxLength: 400 }).map((u) => Buffer.from(u)),
    run: (b: Buffer) => {
      if (decodeQuotedPrintable(b).length > b.length) throw new Error('decoded QP is longer than its input')
    },
    worst: (n: number) => Buffer.from(' '.repeat(n)),
  }),
  target({
    name: 'base64 check (base64Problem)',
    input: fc.uint8Array({ maxLength: 400 }).map((u) => Buffer.from(u)),
    run: (b: Buffer) => void base64Problem(b),
    worst: (n: number) => Buffer.from('QUJD\r\n'.repeat(n / 6)),
  }),
  target({
    name: 'UTF-7 (decodeUtf7)',
    input: tokens(['+', '-', 'AEE', 'AMQ', '+-', 'x']),
    run: (s: string) => void decodeUtf7(s),
    worst: (n: number) => '+AEEAMQ'.repeat(n / 7),
  }),
  target({
    name: 'HTML to text (htmlText)',
    input: tokens(['<', '>', '<!--', '-->', '<script>', '</script>', '&#65;', '&#x41;', '&amp', '<b>', 'A123']),
    run: (s: string) => void htmlText(s),
    worst: (n: number) => '<'.repeat(n),
  }),
  target({
    name: 'HTML link rewrite (rewriteHtml)',
    input: tokens(['<a ', '<A HREF=', 'href=', '"', "'", '>', '<!--', '-->', '<script>', '</script>', 'https://b.example/', '&amp;', '</body>', ' ']),
    run: (s: string) => void rewriteHtml(s, (_url, i) => `https://t.example/c/${i}`, '<img>'),
    worst: (n: number) => '<a title=">" href="https://b.example/x">y</a>'.repeat(n / 44),
  }),
  target({
    name: 'return-path token spelling (unbase32: canonical only)',
    input: fc.oneof(fc.stringMatching(/^[a-z2-7]{0,64}$/), fc.string({ maxLength: 64 })),
    // #30: a token spelled any other way than its own never decodes, so it never opens.
    run: (s: string) => {
      const b = unbase32(s)
      if (b && base32(b) !== s) throw new Error(`"${s}" decoded, but its bytes spell "${base32(b)}"`)
    },
    worst: (n: number) => 'a'.repeat(n),
  }),
  target({
    name: 'national IDs (findTaiwanIds)',
    input: fc.string({ maxLength: 300 }),
    run: (s: string) => void findTaiwanIds(s),
    worst: (n: number) => 'A12345678'.repeat(n / 9),
  }),
  target({
    // #32: read as a person reads it — look-alike letters and every script's digits folded,
    // ID-shaped candidates at every position, astral characters mapped back, masking.
    name: 'national IDs in other scripts (findTaiwanIds, maskTaiwanIds)',
    input: fc.string({ unit: fc.constantFrom(...'A\u0410\u0391ſℓl١٢٣0123456789 \u{1d7ce}\u{11066}\u0301客', 'a'), maxLength: 300 }),
    run: (s: string) => {
      void findTaiwanIds(s)
      if (findTaiwanIds(maskTaiwanIds(s)).length) throw new Error(`an ID survives masking: ${JSON.stringify(s)}`)
    },
    worst: (n: number) => '\u0410\u{11066}١٢٣٤٥٦٧٨'.repeat(n / 12),
  }),
  target({
    name: 'content sniffing (sniff)',
    input: fc.oneof(
      mutated(fc.constant(ZIP)),
      mutated(fc.constant(PDF)),
      tokens(['PK\x05\x06', 'PK\x03\x04', '%PDF-', '\0', 'ustar', 'BZh9', '1AY&SY']).map((s) => Buffer.from(s, 'latin1')),
    ),
    run: (b: Buffer) => void sniff(b),
    // End records everywhere in the last 64 KiB, none whose comment runs to the end.
    worst: (n: number) => Buffer.concat([Buffer.alloc(n), Buffer.from('PK\x05\x06\xff\xff'.repeat(70_000 / 6), 'latin1')]),
  }),
  target({
    name: 'PDF trailer and cross-reference (pdfEncryption)',
    input: fc.oneof(
      mutated(fc.constant(PDF)),
      tokens(['%PDF-1.4\n', 'xref', 'trailer', '<<', '>>', '/Encrypt', ' 2 0 R', 'startxref\n', '(', ')', '\\', '[', ']', '0000000009 00000 n \n', '%']).map(
        (s) => Buffer.from(s),
      ),
    ),
    run: (b: Buffer) => void pdfEncryption(b),
    worst: (n: number) => Buffer.from(`%PDF-1.4\n${'('.repeat(n)}\ntrailer << /Encrypt 1 0 R >>\nstartxref\n9\n%%EOF\n`),
  }),
  target({
    name: 'ZIP directory (readZip)',
    input: fc.oneof(
      mutated(fc.constant(ZIP)),
      fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
    ),
    run: (b: Buffer) => void readZip(b),
    worst: (n: number) => {
      // A directory of n/46 empty entries, all walked before the first local header is looked at.
      const cd = Buffer.alloc(Math.floor(n / 46) * 46)
      for (let i = 0; i < cd.length; i += 46) cd.writeUInt32LE(0x02014b50, i)
      const end = Buffer.alloc(22)
      end.writeUInt32LE(0x06054b50, 0)
      end.writeUInt16LE(0xfffe, 8)
      end.writeUInt16LE(0xfffe, 10)
      end.writeUInt32LE(cd.length, 12)
      return Buffer.concat([cd, end])
    },
  }),
  target({
    name: 'DER (hal/crypto der-read)',
    input: mutated(fc.constant(CERT)),
    run: (b: Buffer) =>
      coded(
        () => {
          const top = read(b)
          children(top)
          keyUsage(certificateParts(b))
        },
        (e) => e instanceof Error && /^(DER: |not an X\.509|X\.509 certificate is missing)/.test(e.message),
      ),
    size: 1 << 15, // certificates and CMS structures, not megabytes
    worst: (n: number) =>
      Buffer.concat([Buffer.from([0x30, 0x84]), Buffer.from([(n >> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]), Buffer.alloc(n, 0x05)]),
  }),
  target({
    name: 'DKIM canonicalisation (relaxedBody, relaxedHeader)',
    input: fc.string({ maxLength: 300 }),
    run: (s: string) => {
      relaxedBody(Buffer.from(s))
      relaxedHeader(`X: ${s}`)
    },
    worst: (n: number) => ' a'.repeat(n / 2),
  }),
  target({
    name: 'SMTP replies from a receiving server (ReplyReader)',
    input: fc.array(tokens(['250', '-', ' ', '\r\n', '220', '5', 'x', '\n']), { maxLength: 8 }),
    run: (chunks: string[]) => {
      const r = new ReplyReader()
      for (const c of chunks) {
        r.push(Buffer.from(c, 'latin1'))
        while (r.next()); // the client reads what it asked for as it arrives
      }
    },
    // Many short complete replies, arriving in pieces: every byte is looked at once.
    worst: (n: number) => Array.from({ length: n / 4096 }, () => '250 ok\r\n'.repeat(512)),
  }),
]
