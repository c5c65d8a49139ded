import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import type { FileHandle } from 'node:fs/promises'
import type { Envelope } from '../pipeline/handoff.ts'
import { createError } from '../box-errors.ts'

/**
 * The on-disk form of one spooled message (M10, S9):
 *
 *   "SGSP" | version (1) | header length (u32 BE) | header JSON | ciphertext | GCM tag (16)
 *
 * The header holds what scheduling needs and nothing that identifies a person:
 * id, epoch, creation time, size, and what the record's data key is made from.
 * The ciphertext (AES-256-GCM under the record's own data key, with the whole
 * header as additional data) holds the envelope — recipient addresses
 * included — and the message bytes.
 *
 * Version 2 (#35): the data key is derived (HKDF-SHA256, a random salt of the
 * record's own, its id in the info) from its epoch's data key, which the
 * header carries as the HSM's epoch key wrapped it — one HSM wrap per epoch
 * and start, one unwrap per epoch and start, instead of one of each per mail.
 * Version 1 (still read): a fresh data key per mail, wrapped by the HSM.
 */
const MAGIC = Buffer.from('SGSP')
const VERSION = 2
const VERSIONS_READ = new Set([1, 2])
const TAG = 16

/** Version 2: the record's data key is derived from its epoch's data key (sealed: as the HSM's epoch key wrapped it). */
export interface DerivedKeyRef {
  epochKeyIv: string
  epochKeyCt: string
  salt: string
}

/** Version 1: the record's own data key, wrapped by the HSM's epoch key. */
export interface WrappedKeyRef {
  wrapIv: string
  wrapCt: string
}

export type RecordHeader = {
  id: string
  epoch: string
  created: number
  /** Plaintext message size in bytes. */
  size: number
  nonce: string
} & (DerivedKeyRef | WrappedKeyRef)

export interface SpooledMail {
  envelope: Envelope
  message: Buffer
}

export class RecordError extends createError('ERECORD_INVALID', 'RecordError') {}

/** Encrypts a mail under `dataKey`; `keyRef` says what that key is made from (kept in the clear header). */
export function encodeRecord(mail: SpooledMail, meta: { id: string; epoch: string; created: number }, dataKey: Buffer, keyRef: DerivedKeyRef): Buffer {
  const r = beginRecord(mail, meta, dataKey, keyRef)
  return Buffer.concat([r.aad, r.cipher.update(r.envelope), r.cipher.update(mail.message), r.cipher.final(), r.cipher.getAuthTag()])
}

/** Slices of the message encrypted and written at a time: a large mail is never held twice. */
const WRITE_SLICE = 1 << 20

/**
 * The same record as `encodeRecord`, encrypted slice by slice straight into
 * the file: memory for a 30 MB statement stays at one slice of ciphertext.
 * #35: each slice goes out in one gathered write with the pieces around it (a
 * record of up to a slice is one job on libuv's pool, where the header,
 * envelope, message, final block and tag were five, each a round trip to a
 * pool thread and back to the event loop). Returns the bytes written. A write
 * the disk takes only part of is retried for the rest; a failing one throws
 * (ENOSPC), and the caller removes the file.
 */
export async function writeRecord(
  fh: FileHandle,
  mail: SpooledMail,
  meta: { id: string; epoch: string; created: number },
  dataKey: Buffer,
  keyRef: DerivedKeyRef,
): Promise<number> {
  const r = beginRecord(mail, meta, dataKey, keyRef)
  let written = 0
  const put = async (parts: Buffer[]) => {
    let left = parts.filter((b) => b.length > 0)
    while (left.length > 0) {
      const { bytesWritten } = await fh.writev(left)
      written += bytesWritten
      left = skip(left, bytesWritten)
    }
  }
  const m = mail.message
  let pending: Buffer[] = [r.aad, r.cipher.update(r.envelope)]
  for (let off = 0; off < m.length; off += WRITE_SLICE) {
    pending.push(r.cipher.update(m.subarray(off, off + WRITE_SLICE)))
    if (off + WRITE_SLICE < m.length) {
      await put(pending)
      pending = []
    }
  }
  pending.push(r.cipher.final(), r.cipher.getAuthTag())
  await put(pending)
  return written
}

/** What is left of `parts` after the first `n` bytes went out. */
function skip(parts: Buffer[], n: number): Buffer[] {
  let i = 0
  while (i < parts.length && n >= parts[i]!.length) n -= parts[i++]!.length
  if (i === parts.length) return []
  return [parts[i]!.subarray(n), ...parts.slice(i + 1)]
}

function beginRecord(mail: SpooledMail, meta: { id: string; epoch: string; created: number }, dataKey: Buffer, keyRef: DerivedKeyRef) {
  const nonce = randomBytes(12)
  const header: RecordHeader = { ...meta, size: mail.message.length, ...keyRef, nonce: nonce.toString('base64') }
  const headerBytes = Buffer.from(JSON.stringify(header))
  const prefix = Buffer.alloc(9)
  MAGIC.copy(prefix, 0)
  prefix[4] = VERSION
  prefix.writeUInt32BE(headerBytes.length, 5)
  const aad = Buffer.concat([prefix, headerBytes])
  const env = Buffer.from(JSON.stringify(mail.envelope))
  const envLen = Buffer.alloc(4)
  envLen.writeUInt32BE(env.length)
  const cipher = createCipheriv('aes-256-gcm', dataKey, nonce)
  cipher.setAAD(aad)
  return { aad, cipher, envelope: Buffer.concat([envLen, env]) }
}

/** Reads the clear header without decrypting (structure check; throws RecordError on a torn record). */
export function readHeader(record: Buffer): { header: RecordHeader; aad: Buffer } {
  if (record.length < 9 + TAG || !record.subarray(0, 4).equals(MAGIC)) throw new RecordError('not a spool record (bad magic or too short)')
  if (!VERSIONS_READ.has(record[4]!)) throw new RecordError(`unknown record version ${record[4]}`)
  const len = record.readUInt32BE(5)
  if (9 + len + TAG > record.length) throw new RecordError('record is truncated')
  let header: RecordHeader
  try {
    header = JSON.parse(record.subarray(9, 9 + len).toString('utf8')) as RecordHeader
  } catch {
    throw new RecordError('record header is not readable')
  }
  if (typeof header.id !== 'string' || typeof header.epoch !== 'string') throw new RecordError('record header lacks id or epoch')
  const derived = 'salt' in header && typeof header.salt === 'string' && typeof header.epochKeyIv === 'string' && typeof header.epochKeyCt === 'string'
  const wrapped = 'wrapIv' in header && typeof header.wrapIv === 'string' && typeof header.wrapCt === 'string'
  if (record[4] === 2 ? !derived : !wrapped) throw new RecordError(`record header lacks its key reference (version ${record[4]})`)
  return { header, aad: record.subarray(0, 9 + len) }
}

/** Decrypts and authenticates a record with its data key; any change to any byte fails. */
export function decodeRecord(record: Buffer, dataKey: Buffer): SpooledMail {
  const { header, aad } = readHeader(record)
  const decipher = createDecipheriv('aes-256-gcm', dataKey, Buffer.from(header.nonce, 'base64'))
  decipher.setAAD(aad)
  decipher.setAuthTag(record.subarray(record.length - TAG))
  let plain: Buffer
  try {
    plain = decipher.update(record.subarray(aad.length, record.length - TAG))
    // GCM is a stream mode: final() only checks the tag and adds nothing (were it ever to, it is joined on).
    const rest = decipher.final()
    if (rest.length) plain = Buffer.concat([plain, rest])
  } catch {
    throw new RecordError('record failed authentication (GCM tag mismatch)')
  }
  const envLen = plain.readUInt32BE(0)
  const envelope = JSON.parse(plain.subarray(4, 4 + envLen).toString('utf8')) as Envelope
  return { envelope, message: plain.subarray(4 + envLen) }
}
