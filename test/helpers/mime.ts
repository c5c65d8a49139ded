import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import fc from 'fast-check'
import { MimeError } from '../../firmware/mime/header.ts'
import { decodedBody, parseMessage, walk } from '../../firmware/mime/tree.ts'

export interface Leaf {
  type: string
  filename: string
  sha256: string
}

/** The box's reading of a message: its leaves, or the code it refuses it with. */
export function boxLeaves(raw: Buffer): Leaf[] | { refused: string } {
  try {
    const top = parseMessage(raw)
    return [...walk(top)]
      .filter((n) => n.children.length === 0)
      .map((n) => ({ type: n.mime, filename: n.filename, sha256: createHash('sha256').update(decodedBody(raw, n)).digest('hex') }))
  } catch (err) {
    if (err instanceof MimeError) return { refused: err.code }
    throw err
  }
}

export type PyReading = Leaf[] | { error: string }

/** Python's email package (compat32 and default policies) reads every message; one process for the lot. */
export async function pythonLeaves(messages: readonly Buffer[]): Promise<{ compat32: PyReading; default: PyReading }[]> {
  const script = fileURLToPath(new URL('./py-mime.py', import.meta.url))
  return new Promise((resolve, reject) => {
    const p = spawn('/usr/bin/python3', [script], { stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d))
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d))
    p.on('error', reject)
    p.on('close', (code) => {
      if (code !== 0) return reject(new Error(`python exited ${code}: ${err}`))
      const lines = out.trim().split('\n').filter(Boolean)
      resolve(lines.map((l) => JSON.parse(l) as { compat32: PyReading; default: PyReading }))
    })
    p.stdin.end(messages.map((m) => `${JSON.stringify({ b64: m.toString('base64') })}\n`).join(''))
  })
}

const CRLF = '\r\n'
const b64lines = (b: Buffer) => b.toString('base64').replace(/.{76}/g, `$&${CRLF}`)

/** A random MIME message, valid or bent in one of the ways readers disagree about. */
export const mimeMessage: fc.Arbitrary<Buffer> = fc
  .record({
    shape: fc.constantFrom('leaf', 'mixed', 'nested', 'digest', 'rfc822'),
    boundaryA: fc.constantFrom('A', 'AB', 'b1', '----=_Part_1', 'x y', 'B'),
    boundaryB: fc.constantFrom('A', 'AB', 'b2', '----=_Part_1_2', 'C'),
    texts: fc.array(fc.string({ maxLength: 40 }), { minLength: 1, maxLength: 3 }),
    cte: fc.constantFrom('7bit', 'base64', 'quoted-printable', '8bit'),
    pdf: fc.uint8Array({ minLength: 0, maxLength: 64 }),
    filename: fc.constantFrom('statement.pdf', '對帳單.pdf', 'a b.pdf', ''),
    filenameForm: fc.constantFrom('plain', 'rfc2231', 'rfc2047', 'both-names', 'name-only'),
    preamble: fc.constantFrom('', '', 'This is a multi-part message in MIME format.', '--A\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4'),
    epilogue: fc.constantFrom('', '', '\r\n', 'end', 'Content-Type: text/plain'),
    bend: fc.oneof(
      { arbitrary: fc.constant('none'), weight: 12 },
      {
        arbitrary: fc.constantFrom(
          'dup-boundary',
          'dup-ct',
          'dup-cte',
          'space-name',
          'not-a-field',
          'dup-charset',
          'no-close',
          'garbage-b64',
          'long-header',
          'garbage-after-delim',
          'uuencode',
        ),
        weight: 10,
      },
    ),
  })
  .map((r) => {
    const enc = (text: string) => {
      const bytes = Buffer.from(text, 'utf8')
      if (r.cte === 'base64') return b64lines(bytes)
      if (r.cte === 'quoted-printable')
        return bytes.toString('latin1').replace(/[^\x20-\x3c\x3e-\x7e]/g, (c) => `=${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`)
      if (r.cte === '7bit') return text.replace(/[^\x20-\x7e]/g, '?')
      return text.replace(/[\r\n\0]/g, ' ')
    }
    const textPart = (t: string) =>
      `Content-Type: text/plain; charset=utf-8${r.bend === 'dup-charset' ? '; charset=big5' : ''}${CRLF}Content-Transfer-Encoding: ${r.cte}${CRLF}${CRLF}${enc(t)}${r.bend === 'uuencode' ? `${CRLF}begin 644 x.pdf${CRLF}M${CRLF}end` : ''}`
    const fn = r.filename
    const names =
      fn === ''
        ? ['', '']
        : r.filenameForm === 'rfc2231'
          ? ['', `; filename*=utf-8''${encodeURIComponent(fn)}`]
          : r.filenameForm === 'rfc2047'
            ? ['', `; filename="=?UTF-8?B?${Buffer.from(fn).toString('base64')}?="`]
            : r.filenameForm === 'both-names'
              ? [`; name="x${fn}"`, `; filename="${fn}"`]
              : r.filenameForm === 'name-only'
                ? [`; name="${fn}"`, '']
                : ['', `; filename="${fn}"`]
    const body = r.bend === 'garbage-b64' ? `${b64lines(Buffer.from(r.pdf))}${CRLF}!!!!${CRLF}QUJD` : b64lines(Buffer.from([0x25, 0x50, 0x44, 0x46, ...r.pdf]))
    const pdfPart = `Content-Type: application/pdf${names[0]}${CRLF}Content-Disposition: attachment${names[1]}${CRLF}Content-Transfer-Encoding: base64${CRLF}${CRLF}${body}`
    const multipart = (b: string, parts: string[], sub = 'mixed') => {
      const dupB = r.bend === 'dup-boundary' ? `; boundary="${b}x"` : ''
      const head = `Content-Type: multipart/${sub}; boundary="${b}"${dupB}${CRLF}${r.bend === 'dup-ct' ? `Content-Type: text/plain${CRLF}` : ''}${CRLF}`
      const delim = r.bend === 'garbage-after-delim' ? `--${b}junk` : `--${b}`
      const close = r.bend === 'no-close' ? '' : `${CRLF}--${b}--${CRLF}${r.epilogue}`
      return `${head}${r.preamble ? `${r.preamble}${CRLF}` : ''}${parts.map((p, i) => `${i === 1 ? delim : `--${b}`}${CRLF}${p}`).join(CRLF)}${close}`
    }
    let entity: string
    switch (r.shape) {
      case 'leaf':
        entity = textPart(r.texts[0]!)
        break
      case 'mixed':
        entity = multipart(r.boundaryA, [...r.texts.map(textPart), pdfPart])
        break
      case 'nested':
        entity = multipart(r.boundaryA, [multipart(r.boundaryB, r.texts.map(textPart), 'alternative'), pdfPart])
        break
      case 'digest':
        entity = multipart(
          r.boundaryA,
          [`${CRLF}From: a@b.example${CRLF}Subject: inner${CRLF}${CRLF}inner body`, `Content-Type: text/plain${CRLF}${CRLF}x`],
          'digest',
        )
        break
      default:
        entity = `Content-Type: message/rfc822${CRLF}${CRLF}From: a@b.example${CRLF}Subject: forwarded${CRLF}${multipart(r.boundaryB, [textPart(r.texts[0]!), pdfPart])}`
    }
    const top =
      `From: "Bank" <statements@bank.example>${CRLF}To: customer@example.net${CRLF}Subject: statement${CRLF}MIME-Version: 1.0${CRLF}` +
      (r.bend === 'dup-cte' ? `Content-Transfer-Encoding: 7bit${CRLF}Content-Transfer-Encoding: base64${CRLF}` : '') +
      (r.bend === 'space-name' ? `Content-Type : text/html${CRLF}` : '') +
      (r.bend === 'not-a-field' ? `this line is no field${CRLF}` : '') +
      (r.bend === 'long-header' ? `X-Long: ${'x'.repeat(1000)}${CRLF}` : '')
    const msg = `${top}${entity}${CRLF}`
    return Buffer.from(msg, r.cte === '8bit' ? 'utf8' : 'utf8')
  })
