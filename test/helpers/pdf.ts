import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { run } from './hsm.ts'

/**
 * Real PDFs made by qpdf: plain, encrypted (RC4-128, AES-128, AES-256), with
 * cross-reference streams, and with an incremental update appended.
 */
export async function pdfFixtures(dir: string): Promise<Record<string, Buffer>> {
  const plain = join(dir, 'plain.pdf')
  await run('qpdf', ['--empty', plain])
  const out: Record<string, Buffer> = { plain: readFileSync(plain) }
  const variants: [string, string[]][] = [
    ['rc4-128', ['--allow-weak-crypto', '--encrypt', 'A123456789', 'owner', '128', '--use-aes=n', '--']],
    ['aes-128', ['--allow-weak-crypto', '--encrypt', 'A123456789', 'owner', '128', '--use-aes=y', '--']],
    ['aes-256', ['--encrypt', 'A123456789', 'owner', '256', '--']],
    ['aes-256-xref-streams', ['--object-streams=generate', '--encrypt', 'A123456789', 'owner', '256', '--']],
    ['plain-xref-streams', ['--object-streams=generate']],
  ]
  for (const [name, args] of variants) {
    const f = join(dir, `${name}.pdf`)
    await run('qpdf', [...args, plain, f]).catch((e: { code: number }) => {
      if (e.code !== 3) throw e // 3 = warnings (e.g. RC4 is weak), file still written
    })
    out[name] = readFileSync(f)
  }
  out['plain-incremental'] = incrementalUpdate(out.plain!, false)
  out['aes-256-incremental'] = incrementalUpdate(out['aes-256']!, true)
  return out
}

/** Appends an incremental update (a new object, xref section, trailer with /Prev) as an editor would. */
function incrementalUpdate(pdf: Buffer, keepEncrypt: boolean): Buffer {
  const text = pdf.toString('latin1')
  const prev = Number(/startxref\s+(\d+)/g.exec(text.slice(text.lastIndexOf('startxref')))![1])
  const size = Number(/\/Size (\d+)/.exec(text)?.[1] ?? 10)
  const root = /\/Root (\d+ \d+ R)/.exec(text)?.[1] ?? '1 0 R'
  const encrypt = keepEncrypt ? /\/Encrypt (\d+ \d+ R)/.exec(text)?.[1] : undefined
  const id = /\/ID\s*\[[^\]]*\]/.exec(text)?.[0] ?? ''
  const objOffset = pdf.length + 1
  const obj = `\n${size} 0 obj\n<< /Producer (incremental) >>\nendobj\n`
  const xrefOffset = pdf.length + obj.length
  const xref = `xref\n${size} 1\n${String(objOffset).padStart(10, '0')} 00000 n \ntrailer\n<< /Size ${size + 1} /Root ${root} /Prev ${prev} ${encrypt ? `/Encrypt ${encrypt}` : ''} ${id} >>\nstartxref\n${xrefOffset}\n%%EOF\n`
  return Buffer.concat([pdf, Buffer.from(obj + xref, 'latin1')])
}

/** A ZIP made by python's zipfile; `encrypted` sets the general-purpose encryption bit (what the rule reads). */
export async function zipFixture(dir: string, encrypted: boolean): Promise<Buffer> {
  const f = join(dir, `z${encrypted ? 'e' : 'p'}.zip`)
  await run('/usr/bin/python3', [
    '-c',
    `import zipfile; z = zipfile.ZipFile(${JSON.stringify(f)}, 'w'); z.writestr('statement.pdf', b'%PDF-1.4 data'); z.close()`,
  ])
  const zip = readFileSync(f)
  if (encrypted) {
    for (const sig of [0x04034b50, 0x02014b50]) {
      for (let i = zip.indexOf(Buffer.from(new Uint32Array([sig]).buffer)); i >= 0; i = zip.indexOf(Buffer.from(new Uint32Array([sig]).buffer), i + 4)) {
        const at = sig === 0x04034b50 ? i + 6 : i + 8
        zip.writeUInt16LE(zip.readUInt16LE(at) | 1, at)
      }
    }
  }
  return zip
}

/**
 * A one-page PDF with text, made by qpdf from a hand-written file (qpdf
 * rewrites it with correct offsets), in the variants a firm's generator might
 * produce: classic and cross-reference-stream, linearized, encrypted with every
 * standard handler qpdf writes (user password "u"), and with an incremental update.
 */
export async function pagePdfs(dir: string): Promise<Record<string, Buffer>> {
  const src = join(dir, 'src.pdf')
  const content = 'BT /F1 12 Tf 72 720 Td (Statement for customer A123456789) Tj ET'
  writeFileSync(
    src,
    `%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n` +
      `3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >> endobj\n` +
      `4 0 obj << /Length ${content.length} >> stream\n${content}\nendstream endobj\n5 0 obj << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> endobj\n` +
      `trailer << /Root 1 0 R /Size 6 >>\n%%EOF\n`,
  )
  const base = join(dir, 'page.pdf')
  await qpdf([src, base])
  const out: Record<string, Buffer> = { 'plain-page': readFileSync(base) }
  const variants: [string, string[]][] = [
    ['plain-page-xref-stream', ['--object-streams=generate']],
    ['plain-page-linearized', ['--linearize']],
    ['rc4-40-page', ['--allow-weak-crypto', '--encrypt', 'u', 'o', '40', '--']],
    ['rc4-128-page', ['--allow-weak-crypto', '--encrypt', 'u', 'o', '128', '--use-aes=n', '--']],
    ['aes-128-page', ['--allow-weak-crypto', '--encrypt', 'u', 'o', '128', '--use-aes=y', '--']],
    ['aes-256-page', ['--encrypt', 'u', 'o', '256', '--']],
    ['aes-256-page-xref-stream', ['--object-streams=generate', '--encrypt', 'u', 'o', '256', '--']],
    ['aes-256-page-linearized', ['--linearize', '--encrypt', 'u', 'o', '256', '--']],
  ]
  for (const [name, args] of variants) {
    const f = join(dir, `${name}.pdf`)
    await qpdf([...args, base, f])
    out[name] = readFileSync(f)
  }
  out['plain-page-incremental'] = incrementalUpdate(out['plain-page']!, false)
  out['aes-256-page-incremental'] = incrementalUpdate(out['aes-256-page']!, true)
  return out
}

async function qpdf(args: string[]): Promise<void> {
  await run('qpdf', args).catch((e: { code: number }) => {
    if (e.code !== 3) throw e // 3 = warnings (e.g. RC4 is weak); the file is written
  })
}

export type QpdfVerdict = 'encrypted' | 'unencrypted' | 'error'

/** qpdf's own judgement (`--show-encryption`, opening with the test user password): the independent oracle. */
export async function qpdfEncryption(file: string): Promise<QpdfVerdict> {
  const out = await run('qpdf', ['--show-encryption', '--password=u', file]).then(
    (r) => r.stdout,
    (e: { code: number; stdout: string }) => (e.code === 3 ? e.stdout : undefined),
  )
  if (out === undefined) return 'error'
  if (out.includes('File is not encrypted')) return 'unencrypted'
  return /^R = \d/m.test(out) ? 'encrypted' : 'error'
}
