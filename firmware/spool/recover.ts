import { opendir, readdir, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { HsmError } from '../../hal/hsm/index.ts'
import type { Logger } from '../log.ts'
import { parseRecordName } from './ids.ts'
import type { JournalState } from './journal.ts'
import { RecordError } from './record.ts'
import { decodeWait, type ReceiptWait, type SpoolEntry } from './types.ts'

/**
 * The spool as the disk and the journal leave it at start: every record file
 * in the shard directories becomes an index entry in the state its journal
 * line says (none: queued), with the recipients already done or the wait for
 * a read receipt (M11) it had. Records the journal calls final are returned
 * for removal (the crash came between the journal and the unlink); `.tmp`
 * files are removed here: never renamed, so never answered 250.
 * Directories are streamed in batches: no array of every name.
 */
export async function scanRecords(
  dir: string,
  journal: ReadonlyMap<string, JournalState | 'queued'>,
  onEntry: (entry: SpoolEntry, kept: { done?: string; wait?: ReceiptWait }) => void,
): Promise<{ finals: string[]; torn: number }> {
  const finals: string[] = []
  let torn = 0
  for (const shard of await readdir(dir, { withFileTypes: true })) {
    if (!shard.isDirectory() || shard.name === 'quarantine') continue
    const shardDir = join(dir, shard.name)
    // Streamed in batches: no array of every name in a large directory.
    for await (const dirent of await opendir(shardDir, { bufferSize: 256 })) {
      const name = dirent.name
      if (name.endsWith('.tmp')) {
        // Never acknowledged: the crash came before rename, so no 250 was sent for it.
        await unlink(join(shardDir, name))
        torn++
        continue
      }
      const parsed = parseRecordName(name)
      if (!parsed) continue
      const { id, epoch, created } = parsed
      const j = journal.get(id)
      if (j !== undefined && j !== 'queued' && j.state === 'final') {
        finals.push(join(shardDir, name))
        continue
      }
      const st = j === undefined || j === 'queued' ? undefined : j
      const wait = st?.state === 'awaiting' ? decodeWait(st.done) : undefined
      onEntry(
        {
          id,
          epoch,
          created,
          state: st?.state === 'held' ? 'held' : wait ? 'awaiting' : st ? 'deferred' : 'queued',
          attempts: st?.attempts ?? 0,
          nextAttemptAt: st?.nextAttemptAt ?? created,
        },
        wait ? { wait } : { done: st?.done },
      )
    }
  }
  return { finals, torn }
}

/**
 * Reads and authenticates every record once after start, without holding up accepting or
 * delivering (it yields every 256 records). `read` quarantines a record that fails; an HSM
 * that is away pauses the check (the next start does it again).
 */
export async function verifyRecords(o: {
  ids: Iterable<string>
  skip: (id: string) => boolean
  read: (id: string) => Promise<unknown>
  stopping: () => boolean
  log: Logger
}): Promise<void> {
  let checked = 0
  let bad = 0
  for (const id of o.ids) {
    if (o.stopping()) return
    if (o.skip(id)) continue
    try {
      await o.read(id)
      checked++
    } catch (err) {
      if (err instanceof RecordError || (err instanceof HsmError && err.code === 'EHSM_DATA_INVALID')) bad++
      else if (err instanceof HsmError) return void o.log.warn({ err: err.message }, 'spool verification paused: HSM unavailable')
    }
    if (checked % 256 === 0) await new Promise((r) => setImmediate(r))
  }
  o.log.info({ checked, quarantined: bad }, 'spool verification finished')
}
