/**
 * What a part's bytes are, whatever it is called (M13, #32): a customer's mail
 * program sniffs content, so the policy judges a PDF labelled text/plain as the
 * PDF it is. Only the formats the rules care about: PDF and ZIP (each has its
 * encryption rule) and the archive formats a profile's `attachmentTypes` may
 * allow or forbid. Looks at most at the first 1 KiB, 265 bytes past the tar
 * header's start, and the last 64 KiB + 22 bytes: constant work, whatever the
 * size.
 *
 * Differences from `file --mime-type` (Debian's `file`, the independent
 * implementation the tests compare with) are on purpose and on the safe side:
 * a PDF header is found anywhere in the first 1,024 bytes, as Acrobat and
 * pdf.js accept it (`file` looks in the first 256); a ZIP is found by its end
 * record too, as every unzip reads it, when something precedes the first entry
 * (a self-extractor, or junk meant to hide it).
 */

export interface Format {
  kind: 'pdf' | 'zip' | 'archive'
  /** The MIME type `file --mime-type` names it by. */
  mime: string
  /** For a reply: "a PDF", "a ZIP archive", … */
  label: string
  /** File name extensions that declare it (with application/octet-stream). */
  ext: readonly string[]
}

export const PDF: Format = { kind: 'pdf', mime: 'application/pdf', label: 'a PDF', ext: ['pdf'] }
export const ZIP: Format = { kind: 'zip', mime: 'application/zip', label: 'a ZIP archive', ext: ['zip'] }

/** Archives known by their first bytes (magic numbers as `file`'s database has them). */
const ARCHIVES: { magic: Buffer; at: number; format: Format }[] = [
  { magic: Buffer.from('377abcaf271c', 'hex'), at: 0, format: { kind: 'archive', mime: 'application/x-7z-compressed', label: 'a 7-Zip archive', ext: ['7z'] } },
  { magic: Buffer.from('Rar!\x1a\x07', 'latin1'), at: 0, format: { kind: 'archive', mime: 'application/x-rar', label: 'a RAR archive', ext: ['rar'] } },
  { magic: Buffer.from('1f8b08', 'hex'), at: 0, format: { kind: 'archive', mime: 'application/gzip', label: 'gzip data', ext: ['gz', 'tgz'] } },
  { magic: Buffer.from('fd377a585a00', 'hex'), at: 0, format: { kind: 'archive', mime: 'application/x-xz', label: 'xz data', ext: ['xz', 'txz'] } },
  { magic: Buffer.from('28b52ffd', 'hex'), at: 0, format: { kind: 'archive', mime: 'application/zstd', label: 'Zstandard data', ext: ['zst'] } },
  { magic: Buffer.from('ustar', 'latin1'), at: 257, format: { kind: 'archive', mime: 'application/x-tar', label: 'a tar archive', ext: ['tar'] } },
]
const BZIP2: Format = { kind: 'archive', mime: 'application/x-bzip2', label: 'bzip2 data', ext: ['bz2', 'tbz2'] }

/** Acrobat and pdf.js accept the header anywhere in the first 1,024 bytes. */
const PDF_HEADER_WITHIN = 1024
const PDF_HEADER = Buffer.from('%PDF-')
const LOCAL_HEADER = 0x04034b50
const LOCAL_HEADER_BYTES = Buffer.from([0x50, 0x4b, 0x03, 0x04])
const END_RECORD = Buffer.from([0x50, 0x4b, 0x05, 0x06])
const END_RECORD_SIZE = 22
const MAX_COMMENT = 0xffff

/** Every format the bytes are (a polyglot is more than one: each is judged), in a fixed order. */
export function sniff(content: Buffer): Format[] {
  const found: Format[] = []
  if (isZip(content)) found.push(ZIP)
  for (const a of ARCHIVES) if (content.length >= a.at + a.magic.length && content.subarray(a.at, a.at + a.magic.length).equals(a.magic)) found.push(a.format)
  // bzip2: "BZh", a block size 1–9, then a block's magic (or the end-of-stream one of an empty stream).
  if (/^BZh[1-9](1AY&SY|\x17rE8P\x90)/.test(content.subarray(0, 10).toString('latin1'))) found.push(BZIP2)
  // A PDF header at the start; further in only when nothing else starts there (a ZIP or tar
  // holding a PDF uncompressed shows its header within the first KiB, and is still a ZIP or tar).
  const startsAsOther = found.length > 0 && !(found.length === 1 && found[0] === ZIP && !startsWith(content, LOCAL_HEADER_BYTES))
  if (startsWith(content, PDF_HEADER) || (!startsAsOther && content.subarray(0, PDF_HEADER_WITHIN + PDF_HEADER.length - 1).includes(PDF_HEADER)))
    found.unshift(PDF)
  return found
}

const startsWith = (b: Buffer, magic: Buffer) => b.length >= magic.length && b.subarray(0, magic.length).equals(magic)

/**
 * A ZIP archive as readers find one: a local file header at the start, or an
 * end-of-central-directory record whose comment runs exactly to the end (how
 * unzip finds the directory of an archive with data before it).
 */
function isZip(b: Buffer): boolean {
  if (b.length >= 4 && b.readUInt32LE(0) === LOCAL_HEADER) return true
  const from = Math.max(0, b.length - END_RECORD_SIZE - MAX_COMMENT)
  const tail = b.subarray(from)
  for (let at = tail.lastIndexOf(END_RECORD); at >= 0; at = at > 0 ? tail.lastIndexOf(END_RECORD, at - 1) : -1)
    if (at + END_RECORD_SIZE <= tail.length && at + END_RECORD_SIZE + tail.readUInt16LE(at + 20) === tail.length) return true
  return false
}

/** Does the declared type (or, for application/octet-stream, the file name) say what the bytes are? */
export function declares(mime: string, filename: string, f: Format): boolean {
  const ext = /\.([a-z0-9]+)$/i.exec(filename)?.[1]?.toLowerCase()
  if (mime === f.mime || (mime === 'application/octet-stream' && ext !== undefined && f.ext.includes(ext))) return true
  if (f.kind === 'pdf') return mime === 'application/x-pdf'
  // Aliases, and the formats built on ZIP (OOXML, ODF, EPUB, JAR).
  if (f.kind === 'zip')
    return (
      mime === 'application/x-zip-compressed' ||
      mime === 'application/x-zip' ||
      mime.endsWith('+zip') ||
      mime.startsWith('application/vnd.openxmlformats-officedocument.') ||
      mime.startsWith('application/vnd.oasis.opendocument.') ||
      mime === 'application/java-archive'
    )
  return (f.mime === 'application/gzip' && mime === 'application/x-gzip') || (f.mime === 'application/x-rar' && mime === 'application/vnd.rar')
}
