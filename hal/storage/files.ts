import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs'
import { open, rename, unlink, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import { Writable } from 'node:stream'

/*
 * Files that must survive a crash whole are written one way, here: content to
 * a temporary file beside the target, that file synced, renamed over the
 * target, then the directory synced (the rename itself must reach the disk).
 * After a crash the target holds the old content or the new, never a torn mix;
 * a leftover temporary file ends in `.tmp` and was never acknowledged to anyone.
 */

/** A small file written whole from memory (config, cursors, PIN files, certificates). */
export function writeFileAtomic(path: string, data: string | Buffer, mode = 0o600): void {
  const dir = dirname(path)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const tmp = `${path}.${process.pid}.tmp`
  const fd = openSync(tmp, 'w', mode)
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, path)
  fsyncDir(dir)
}

/**
 * A file whose content `fill` writes (streamed: a spool record, a compressed
 * audit day, a rewritten journal), by the same protocol. `syncDir` replaces
 * the directory sync, for callers that share one among concurrent writers;
 * `exclusive` refuses to reuse a temporary file that exists (a name that must
 * be unique). On any failure the temporary file is removed and the target is
 * untouched.
 */
export async function replaceFile(
  path: string,
  fill: (fh: FileHandle) => Promise<unknown>,
  options: { mode?: number; exclusive?: boolean; syncDir?: (dir: string) => Promise<void> } = {},
): Promise<void> {
  const tmp = `${path}.tmp`
  try {
    const fh = await open(tmp, options.exclusive ? 'wx' : 'w', options.mode ?? 0o600)
    try {
      await fill(fh)
      await fh.datasync()
    } finally {
      await fh.close()
    }
    await rename(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
  await (options.syncDir ?? syncDir)(dirname(path))
}

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

/** fsync of a directory without blocking the event loop. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/**
 * Appends `data` to a file at offset `at` (its current end) and, with `sync`,
 * makes it durable. A full disk can take part of a write without an error:
 * what it took is cut back to `at`, so the file never ends in a torn record
 * that the next append would be glued to. Returns the new end.
 */
export async function appendWhole(fh: FileHandle, data: Buffer, at: number, sync: boolean): Promise<number> {
  try {
    const { bytesWritten } = await fh.write(data, 0, data.length, null)
    if (bytesWritten !== data.length) throw Object.assign(new Error(`write cut short (${bytesWritten} of ${data.length} bytes)`), { code: 'ENOSPC' })
    if (sync) await fh.datasync()
    return at + bytesWritten
  } catch (err) {
    await fh.truncate(at).catch(() => {})
    throw err
  }
}

/**
 * A stream that writes into an open file handle and leaves it open (for
 * `replaceFile`, which syncs and closes it). A write the disk takes only in
 * part fails the stream, like a full disk.
 */
export function fileSink(fh: FileHandle): Writable {
  return new Writable({
    write: (chunk: Buffer, _encoding, done) => {
      fh.write(chunk).then(
        ({ bytesWritten }) =>
          done(
            bytesWritten === chunk.length ? null : Object.assign(new Error(`write cut short (${bytesWritten} of ${chunk.length} bytes)`), { code: 'ENOSPC' }),
          ),
        done,
      )
    },
  })
}
