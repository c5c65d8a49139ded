import fc from 'fast-check'
import { base32, unbase32 } from '../../hal/crypto/base32.ts'
import { children, certificateParts, keyUsage, read } from '../../hal/crypto/der-read.ts'
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
import { DIFFERENTIAL } from './differential.ts'
import { CERT, coded, mutated, PDF, target, tokens, ZIP, zipWorst, type Target } from './inputs.ts'

export { PDF, ZIP, type Target } from './inputs.ts'

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
    worst: zipWorst,
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
  ...DIFFERENTIAL,
]
