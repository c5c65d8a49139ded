import { execFileSync, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

/** What Python's zipfile reads in an archive: each entry's name and whether it is encrypted, or its error. */
export type PyZipReading = { entries: [name: string, encrypted: boolean][] } | { error: string }

const SCRIPT = fileURLToPath(new URL('./py-zip.py', import.meta.url))

/** The name from the bytes the archive holds: UTF-8 if the entry's flag says so, else as our reader takes them (latin1). */
function decode(line: string): PyZipReading {
  const r = JSON.parse(line) as { entries: [string, number][] } | { error: string }
  if ('error' in r) return r
  return { entries: r.entries.map(([hex, flags]) => [Buffer.from(hex, 'hex').toString(flags & 0x800 ? 'utf8' : 'latin1'), (flags & 1) === 1]) }
}

/** One archive, one process: for the fuzz targets, which call it from synchronous code. */
export function pythonZipOne(zip: Buffer): PyZipReading {
  return decode(execFileSync('/usr/bin/python3', ['-I', '-S', SCRIPT, '--one'], { input: zip }).toString())
}

/** Many archives, one process. */
export function pythonZip(archives: readonly Buffer[]): Promise<PyZipReading[]> {
  return new Promise((resolve, reject) => {
    const p = spawn('/usr/bin/python3', ['-I', '-S', SCRIPT])
    let out = ''
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d))
    p.on('error', reject)
    p.on('close', () => resolve(out.trim().split('\n').map(decode)))
    p.stdin.end(archives.map((a) => `${JSON.stringify({ b64: a.toString('base64') })}\n`).join(''))
  })
}
