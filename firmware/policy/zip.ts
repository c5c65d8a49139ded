import { createError } from '../box-errors.ts'

/**
 * What is in a ZIP archive, and is every entry encrypted (M13)? Read from the
 * central directory and the local headers together (APPNOTE 6.3.x), the way a
 * reader that trusts either would see it, and refused when they disagree:
 *
 * - the end-of-central-directory record is the last one in the file and must
 *   end exactly at the comment's end; with ZIP64, its locator and record are
 *   followed;
 * - the central directory is walked from its real offset to its real size —
 *   never by the entry count the end record claims (a count of 0 over an intact
 *   directory hides nothing from unzip or Python), and a count that differs
 *   from what is there is refused;
 * - each entry's local header must be where the directory says, with the same
 *   name and the same encryption flag, and the entries must tile the file from
 *   its first byte to the directory: bytes between them are an entry that a
 *   streaming reader extracts and the directory does not list.
 *
 * Bit 0 of the general purpose flags marks an encrypted entry (traditional
 * PKWARE, WinZip AES, strong encryption alike).
 */
export interface ZipEntry {
  name: string
  encrypted: boolean
}

export type ZipReading = { ok: true; entries: ZipEntry[] } | { ok: false; reason: string }

const EOCD = 0x06054b50
const ZIP64_LOCATOR = 0x07064b50
const ZIP64_EOCD = 0x06064b50
const CENTRAL = 0x02014b50
const LOCAL = 0x04034b50
const DESCRIPTOR = 0x08074b50
const MAX_ENTRIES = 100_000

class Bad extends createError('EZIP_INVALID', 'ZipError') {}

export function readZip(zip: Buffer): ZipReading {
  try {
    return { ok: true, entries: read(zip) }
  } catch (err) {
    if (err instanceof Bad) return { ok: false, reason: err.message }
    if (err instanceof RangeError) return { ok: false, reason: 'a record runs past the end of the file' }
    throw err
  }
}

function read(zip: Buffer): ZipEntry[] {
  const eocd = findEnd(zip)
  let total = zip.readUInt16LE(eocd + 10)
  let cdSize = zip.readUInt32LE(eocd + 12)
  let cdOffset = zip.readUInt32LE(eocd + 16)
  let endOfCd = eocd
  const saturated = total === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff
  const loc = eocd - 20
  // A ZIP64 locator right before the end record means a ZIP64 end record (streaming writers add
  // one even when the 32-bit fields would do): the directory then ends where that record begins.
  if (loc >= 0 && zip.readUInt32LE(loc) === ZIP64_LOCATOR) {
    const rec = Number(zip.readBigUInt64LE(loc + 8))
    if (rec < 0 || rec + 56 > loc || zip.readUInt32LE(rec) !== ZIP64_EOCD) throw new Bad('the ZIP64 end-of-directory record is not where its locator says')
    const t64 = Number(zip.readBigUInt64LE(rec + 32))
    const s64 = Number(zip.readBigUInt64LE(rec + 40))
    const o64 = Number(zip.readBigUInt64LE(rec + 48))
    if ((total !== 0xffff && total !== t64) || (cdSize !== 0xffffffff && cdSize !== s64) || (cdOffset !== 0xffffffff && cdOffset !== o64))
      throw new Bad('the end record and the ZIP64 end record disagree')
    ;[total, cdSize, cdOffset, endOfCd] = [t64, s64, o64, rec]
  } else if (saturated) throw new Bad('a ZIP64 archive without its end-of-directory locator')
  if (cdOffset + cdSize !== endOfCd) throw new Bad('the central directory does not end where the end record begins (data before or inside the archive)')
  const entries: (ZipEntry & { local: number; dataSize: number; descriptor: boolean; zip64: boolean })[] = []
  let pos = cdOffset
  while (pos < endOfCd) {
    if (entries.length >= MAX_ENTRIES) throw new Bad(`more than ${MAX_ENTRIES} entries`)
    if (pos + 46 > endOfCd || zip.readUInt32LE(pos) !== CENTRAL) throw new Bad(`no central directory entry at offset ${pos}`)
    const flags = zip.readUInt16LE(pos + 8)
    let csize = zip.readUInt32LE(pos + 20)
    let usize = zip.readUInt32LE(pos + 24)
    const nameLen = zip.readUInt16LE(pos + 28)
    const extraLen = zip.readUInt16LE(pos + 30)
    const commentLen = zip.readUInt16LE(pos + 32)
    let local = zip.readUInt32LE(pos + 42)
    const next = pos + 46 + nameLen + extraLen + commentLen
    if (next > endOfCd) throw new Bad('a central directory entry runs past the directory')
    const nameBytes = zip.subarray(pos + 46, pos + 46 + nameLen)
    let zip64 = false
    // ZIP64 extended information (APPNOTE 4.5.3): the fields that are 0xFFFFFFFF, in order.
    for (let e = pos + 46 + nameLen; e + 4 <= pos + 46 + nameLen + extraLen;) {
      const id = zip.readUInt16LE(e)
      const len = zip.readUInt16LE(e + 2)
      if (id === 0x0001) {
        zip64 = true
        let f = e + 4
        const next64 = () => {
          const v = Number(zip.readBigUInt64LE(f))
          f += 8
          return v
        }
        if (usize === 0xffffffff) usize = next64()
        if (csize === 0xffffffff) csize = next64()
        if (local === 0xffffffff) local = next64()
      }
      e += 4 + len
    }
    const name = nameBytes.toString(flags & 0x800 ? 'utf8' : 'latin1')
    if (name.endsWith('/') && usize > 0) throw new Bad(`the directory entry "${name.slice(0, 60)}" carries data`)
    entries.push({ name, encrypted: (flags & 1) === 1, local, dataSize: csize, descriptor: (flags & 8) !== 0, zip64 })
    pos = next
  }
  if (entries.length !== total) throw new Bad(`the end record says ${total} entries, the directory holds ${entries.length}`)

  // The local headers, in file order, must tile the archive up to the directory.
  let expect = 0
  for (const e of [...entries].sort((a, b) => a.local - b.local)) {
    if (e.local !== expect)
      throw new Bad(
        e.local > expect
          ? `${e.local - expect} bytes before the entry "${e.name.slice(0, 60)}" that the directory does not list`
          : `entries overlap at offset ${e.local}`,
      )
    if (e.local + 30 > cdOffset || zip.readUInt32LE(e.local) !== LOCAL) throw new Bad(`no local header for "${e.name.slice(0, 60)}" where the directory says`)
    const lflags = zip.readUInt16LE(e.local + 6)
    const nameLen = zip.readUInt16LE(e.local + 26)
    const extraLen = zip.readUInt16LE(e.local + 28)
    const lname = zip.subarray(e.local + 30, e.local + 30 + nameLen).toString(lflags & 0x800 ? 'utf8' : 'latin1')
    if (lname !== e.name) throw new Bad(`the directory names an entry "${e.name.slice(0, 60)}" whose local header names "${lname.slice(0, 60)}"`)
    if (((lflags & 1) === 1) !== e.encrypted) throw new Bad(`"${e.name.slice(0, 60)}" is marked encrypted in one header and not in the other`)
    let end = e.local + 30 + nameLen + extraLen + e.dataSize
    if (e.descriptor) {
      // Sizes in the descriptor are 8 bytes each when the local header carries ZIP64 information (APPNOTE 4.3.9.2).
      const local64 = e.zip64 || hasZip64Extra(zip, e.local + 30 + nameLen, extraLen)
      const sig = end + 4 <= cdOffset && zip.readUInt32LE(end) === DESCRIPTOR ? 4 : 0
      end += sig + 4 + (local64 ? 16 : 8)
    }
    if (end > cdOffset) throw new Bad(`the data of "${e.name.slice(0, 60)}" runs into the central directory`)
    expect = end
  }
  if (expect !== cdOffset) throw new Bad(`${cdOffset - expect} bytes between the last entry and the central directory`)
  return entries.map(({ name, encrypted }) => ({ name, encrypted }))
}

function hasZip64Extra(zip: Buffer, start: number, length: number): boolean {
  for (let e = start; e + 4 <= start + length; e += 4 + zip.readUInt16LE(e + 2)) if (zip.readUInt16LE(e) === 0x0001) return true
  return false
}

/** The end-of-central-directory record: the last signature in the final 64 KiB, which must end exactly where its comment does. */
function findEnd(zip: Buffer): number {
  if (zip.length < 22) throw new Bad('too short for a ZIP archive')
  const sig = Buffer.from([0x50, 0x4b, 0x05, 0x06])
  const at = zip.lastIndexOf(sig)
  if (at < 0 || at < zip.length - 22 - 0xffff) throw new Bad('no end-of-central-directory record')
  if (at + 22 > zip.length || at + 22 + zip.readUInt16LE(at + 20) !== zip.length)
    throw new Bad('the end-of-central-directory record does not end the file (a second record, or data after it)')
  if (zip.readUInt32LE(at) !== EOCD) throw new Bad('no end-of-central-directory record')
  if (zip.readUInt16LE(at + 4) !== 0 || zip.readUInt16LE(at + 6) !== 0) throw new Bad('a split or spanned archive')
  return at
}
