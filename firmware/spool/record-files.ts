import { mkdirSync } from 'node:fs'
import { readFile, rename, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { replaceFile, syncDir } from '../../hal/storage/files.ts'
import { GroupCommit } from '../../hal/storage/group.ts'
import { recordName, shardOf } from './ids.ts'
import { decodeRecord, readHeader, RecordError, type RecordHeader, type SpooledMail } from './record.ts'
import type { SpoolEntry } from './types.ts'

type RecordKey = Pick<SpoolEntry, 'id' | 'epoch' | 'created'>

/**
 * Where the spool's records live on disk (S12): one file per mail in a shard
 * directory named by its id, written whole (temporary file, fdatasync, rename,
 * directory fsync) before it counts; a bad one moved aside to `quarantine/`.
 * Concurrent writers into one shard share its directory fsync (group commit).
 */
export class RecordFiles {
  readonly #dir: string
  readonly #quarantine: string
  readonly #shards = new Set<string>()
  /** One directory fsync per shard for all the records renamed into it meanwhile. */
  readonly #dirSyncs = new Map<string, GroupCommit<void>>()

  constructor(dir: string) {
    this.#dir = dir
    this.#quarantine = join(dir, 'quarantine')
  }

  /** Makes the quarantine directory (at start). */
  prepare(): void {
    mkdirSync(this.#quarantine, { recursive: true, mode: 0o700 })
  }

  path(e: RecordKey): string {
    return join(this.#dir, shardOf(e.id), recordName(e))
  }

  /** Writes a new record whole and durably; a failed write leaves no file (its error is rethrown). */
  async write(e: RecordKey, fill: (fh: FileHandle) => Promise<unknown>): Promise<void> {
    const shardDir = join(this.#dir, shardOf(e.id))
    const final = join(shardDir, recordName(e))
    if (!this.#shards.has(shardDir)) {
      mkdirSync(shardDir, { recursive: true, mode: 0o700 })
      this.#shards.add(shardDir)
    }
    try {
      await replaceFile(final, fill, { exclusive: true, syncDir: (dir) => this.#syncDir(dir) })
    } catch (err) {
      await unlink(final).catch(() => {})
      throw err
    }
  }

  /**
   * A record read and decrypted with the data key `keyOf` gives for its header. A record that
   * is not what its name says throws RecordError; a missing file, the file system's error.
   */
  async open(e: RecordKey, keyOf: (header: RecordHeader) => Promise<Buffer>): Promise<SpooledMail> {
    const record = await readFile(this.path(e))
    const { header } = readHeader(record)
    if (header.id !== e.id) throw new RecordError('record id does not match its file name')
    const key = await keyOf(header)
    try {
      return decodeRecord(record, key)
    } finally {
      key.fill(0)
    }
  }

  /** Moves a record aside (best effort); returns its file name. */
  async quarantine(e: RecordKey): Promise<string> {
    const name = recordName(e)
    await rename(this.path(e), join(this.#quarantine, name)).catch(() => {})
    return name
  }

  /** fsync of a directory, shared by everyone who renamed into it while the previous one ran. */
  #syncDir(dir: string): Promise<void> {
    let group = this.#dirSyncs.get(dir)
    if (!group) this.#dirSyncs.set(dir, (group = new GroupCommit(() => syncDir(dir), { gather: true })))
    return group.add()
  }
}
