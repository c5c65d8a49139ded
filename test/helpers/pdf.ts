import { readFileSync } from 'node:fs'
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
  await run('/usr/bin/python3', ['-c', `import zipfile; z = zipfile.ZipFile(${JSON.stringify(f)}, 'w'); z.writestr('statement.pdf', b'%PDF-1.4 data'); z.close()`])
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
