import { closeSync, fsyncSync, lstatSync, openSync, readdirSync, rmdirSync, unlinkSync, writeSync } from 'node:fs'
import { join } from 'node:path'

/**
 * Deleting for good (S13, ETSI EN 303 645 5.11): each regular file is
 * overwritten once with zeros and fsync'd before it is unlinked, so its blocks
 * on a plain disk no longer hold it. On flash and copy-on-write storage an
 * overwrite may land elsewhere; what matters there is that the spool was
 * encrypted under HSM keys that are destroyed (crypto-shredding), and this is
 * what the certificate of deletion says.
 */
export interface WipeCount {
  files: number
  bytes: number
}

const CHUNK = Buffer.alloc(1 << 20)

/** Overwrites and removes one file (a symlink or special file is only unlinked, never followed). */
export function wipeFile(path: string): WipeCount {
  const st = lstatSync(path)
  if (st.isFile()) {
    const fd = openSync(path, 'r+')
    try {
      for (let done = 0; done < st.size;) done += writeSync(fd, CHUNK, 0, Math.min(CHUNK.length, st.size - done), done)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
  }
  unlinkSync(path)
  return { files: 1, bytes: st.isFile() ? st.size : 0 }
}

/** Wipes every file below `dir` and removes the directories; `keepDir` leaves `dir` itself (empty). A missing `dir` counts nothing. */
export function wipeTree(dir: string, keepDir = false): WipeCount {
  const total: WipeCount = { files: 0, bytes: 0 }
  let st
  try {
    st = lstatSync(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return total
    throw err
  }
  if (!st.isDirectory()) return wipeFile(dir)
  for (const name of readdirSync(dir)) {
    const c = wipeTree(join(dir, name))
    total.files += c.files
    total.bytes += c.bytes
  }
  if (!keepDir) rmdirSync(dir)
  return total
}
