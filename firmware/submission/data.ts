import type { Readable } from 'node:stream'
import { GatewayError } from '../errors.ts'
import type { Hold } from '../memory-budget.ts'

const CR = 0x0d
const LF = 0x0a

export interface ReadOptions {
  maxBytes: number
  bareLineFeed: 'reject' | 'normalize'
  /** Bytes put before the message (the trace field), in the same buffer. */
  prefix?: Buffer
  /** The size the client declared (RFC 1870): the message is read straight into one buffer of it. */
  sizeHint?: number
  /**
   * The transaction's room in the memory budget, grown before each chunk is
   * kept: no room (or the transaction gave way to an older one) means the
   * rest of the message is read without being kept, then refused with 452
   * ESUBMISSION_BUSY.
   */
  hold?: Hold
}

/**
 * Reads the DATA stream smtp-server hands us (already dot-unstuffed, ending
 * only at CRLF.CRLF, so `\n.\n` or `\r.\n` can never end a message early) and
 * checks the line endings of what is left:
 *
 * - NUL bytes are always refused (RFC 5321 §2.3.8; they break downstream parsers).
 * - A bare CR or LF is refused, or with `normalize` rewritten to CRLF. Either
 *   way the bytes that leave the box have only CRLF line endings, so no relay
 *   further down can read a smuggled end-of-data into them.
 * - Size is counted on what the client sent; over the limit is 552 5.3.4.
 *
 * The stream is always read to its end, even after a fault, so the SMTP
 * dialogue stays in step and the reply goes out after the client's final dot.
 */
export async function readMessage(stream: Readable & { sizeExceeded?: boolean }, opts: ReadOptions): Promise<Buffer> {
  // Chunks, then one buffer: ordinary memory, which the GC sees. (Shared memory would spare the inspection
  // worker a copy, but V8 does not count it towards collecting: a gigabyte piled up over 60 large messages.)
  const prefix = opts.prefix ?? Buffer.alloc(0)
  const parts: Buffer[] = [prefix]
  // With a declared size the chunks go straight into one buffer of that size (one copy, not chunks plus their
  // concatenation); a message larger than declared continues in chunks.
  let direct = opts.sizeHint && opts.sizeHint > 0 ? Buffer.allocUnsafeSlow(prefix.length + opts.sizeHint) : undefined
  let directLength = prefix.length
  if (direct) prefix.copy(direct)
  const append = (b: Buffer) => {
    if (direct && directLength + b.length <= direct.length) {
      b.copy(direct, directLength)
      directLength += b.length
      return
    }
    if (direct) {
      parts.length = 0
      parts.push(direct.subarray(0, directLength))
      direct = undefined
    }
    parts.push(b)
  }
  let size = 0
  let fault: GatewayError | undefined
  let pendingCR = false // last byte of the previous chunk was a CR
  // A fault drops what was kept at once; the rest of the stream is read and dropped, to stay in step.
  const fail = (err: GatewayError) => {
    fault ??= err
    parts.length = 0
    direct = undefined
  }
  const busy = () => fail(new GatewayError('ESUBMISSION_BUSY'))
  // Giving way to an older transaction drops what was kept at once, not at the next chunk.
  if (opts.hold) opts.hold.onEvict = busy

  for await (const raw of stream) {
    const chunk = raw as Buffer
    size += chunk.length
    if (fault) continue
    if (size > opts.maxBytes || stream.sizeExceeded) {
      fail(new GatewayError('ESIZE_LIMIT', `message exceeds the maximum size of ${opts.maxBytes} bytes`))
      continue
    }
    if (opts.hold && !opts.hold.grow(prefix.length + size)) {
      busy()
      continue
    }
    if (chunk.indexOf(0) !== -1) {
      fail(new GatewayError('EDATA_NUL'))
      continue
    }
    const bare = findBareNewline(chunk, pendingCR)
    if (bare === -1) {
      append(chunk)
    } else if (opts.bareLineFeed === 'reject') {
      const at = size - chunk.length + Math.max(bare, 0)
      fail(new GatewayError('EDATA_BARE_NEWLINE', `message contains a bare CR or LF at byte ${at}; lines must end with CRLF`))
      continue
    } else {
      append(normalize(chunk, pendingCR))
    }
    pendingCR = chunk[chunk.length - 1] === CR
  }
  if (stream.sizeExceeded && !fault) fault = new GatewayError('ESIZE_LIMIT', `message exceeds the maximum size of ${opts.maxBytes} bytes`)
  if (fault) throw fault
  // A CR as the very last byte has no LF: smtp-server's terminator is CRLF.CRLF,
  // so the content always ends with CRLF and this cannot happen; stay safe anyway.
  if (pendingCR) {
    if (opts.bareLineFeed === 'reject') throw new GatewayError('EDATA_BARE_NEWLINE')
    append(Buffer.from([LF]))
  }
  if (direct) return direct.subarray(0, directLength)
  return Buffer.concat(parts)
}

/**
 * Index of the first bare CR or LF in `chunk` (-1: none; a chunk starting with
 * LF after a CR in the previous chunk is fine). A CR as the last byte is left
 * for the next chunk to decide.
 */
export function findBareNewline(chunk: Buffer, prevEndedWithCR: boolean): number {
  for (let i = chunk.indexOf(LF); i !== -1; i = chunk.indexOf(LF, i + 1)) {
    const before = i === 0 ? (prevEndedWithCR ? CR : -1) : chunk[i - 1]
    if (before !== CR) return i
  }
  if (prevEndedWithCR && chunk.length > 0 && chunk[0] !== LF) return 0
  for (let i = chunk.indexOf(CR); i !== -1 && i < chunk.length - 1; i = chunk.indexOf(CR, i + 1)) {
    if (chunk[i + 1] !== LF) return i
  }
  return -1
}

/** Rewrites bare CR and bare LF to CRLF. A trailing CR is kept for the next chunk. */
function normalize(chunk: Buffer, prevEndedWithCR: boolean): Buffer {
  const out: number[] = []
  if (prevEndedWithCR && chunk[0] !== LF) out.push(LF) // previous chunk's CR was bare
  for (let i = 0; i < chunk.length; i++) {
    const b = chunk[i]!
    if (b === LF) {
      const before = i === 0 ? (prevEndedWithCR ? CR : -1) : chunk[i - 1]
      if (before !== CR) out.push(CR)
      out.push(LF)
    } else if (b === CR) {
      out.push(CR)
      if (i < chunk.length - 1 && chunk[i + 1] !== LF) out.push(LF)
    } else {
      out.push(b)
    }
  }
  return Buffer.from(out)
}
