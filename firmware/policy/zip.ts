/**
 * Are all entries of a ZIP archive encrypted? Reads the central directory
 * (APPNOTE 4.3.12): general purpose bit 0 set means the entry is encrypted
 * (traditional PKWARE or AES, which also sets it).
 */
export function zipEntries(zip: Buffer): { name: string; encrypted: boolean }[] | undefined {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]))
  if (eocd < 0 || eocd + 22 > zip.length) return undefined
  const count = zip.readUInt16LE(eocd + 10)
  let pos = zip.readUInt32LE(eocd + 16)
  const out: { name: string; encrypted: boolean }[] = []
  for (let i = 0; i < count; i++) {
    if (pos + 46 > zip.length || zip.readUInt32LE(pos) !== 0x02014b50) return undefined
    const flags = zip.readUInt16LE(pos + 8)
    const nameLen = zip.readUInt16LE(pos + 28)
    const extraLen = zip.readUInt16LE(pos + 30)
    const commentLen = zip.readUInt16LE(pos + 32)
    const name = zip.subarray(pos + 46, pos + 46 + nameLen).toString(flags & 0x800 ? 'utf8' : 'latin1')
    if (!name.endsWith('/')) out.push({ name, encrypted: (flags & 1) === 1 })
    pos += 46 + nameLen + extraLen + commentLen
  }
  return out
}
