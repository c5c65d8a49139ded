import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js'

/**
 * smtp-server's DATA reader with its search for "CRLF." done by the native
 * `Buffer.indexOf` instead of a JavaScript loop over every byte (#35).
 *
 * `SMTPStream._feedDataStream` (smtp-server 3.21.6, MIT, Andris Reinman)
 * looks at each byte of the message for a dot after a line feed: that loop
 * was the largest single cost of a 1 MB submission on the box's event loop
 * (4.4 ms a mail of 41, V8 profile of bench:postfix's 1 MB load, 2026-12-07).
 * The function below is the library's, line for line, with that loop replaced
 * by a search for "\n." from the same start; what a dot at a line start means
 * (the end of data, an escape, content) is decided exactly as before.
 *
 * This is the code that decides where a message ends, so it is held to the
 * library's own function by a differential test (random messages with dots,
 * bare CR and LF, terminators and pipelined commands, cut into random chunks:
 * the same bytes out, the same commands after; test/firmware/smtp-data-scan.test.ts),
 * and it is installed only on the version it was copied from: another version
 * of smtp-server keeps its own reader, and the test fails until this is looked at.
 */
export const COPIED_FROM = '3.21.6'

/** The library's own reader, kept for the differential test (always called with a stream as `this`). */
// eslint-disable-next-line @typescript-eslint/unbound-method
export const LIBRARY_FEED = SMTPStream.prototype._feedDataStream

const LF_DOT = Buffer.from('\n.')
const END_SEQUENCE = Buffer.from('\r\n.\r\n')
const DOT_CRLF = Buffer.from('.\r\n')

type Done = (err?: Error | null) => void

/** `SMTPStream._feedDataStream` of smtp-server 3.21.6 with the byte loop replaced (see above); the library's comments kept. */
export function feedDataStream(this: SMTPStream, input: Buffer, done: Done): void {
  // only called in data mode, which always has a stream
  const dataStream = this._dataStream!
  let chunk = input
  if (this._lastBytes && this._lastBytes.length) {
    chunk = Buffer.concat([this._lastBytes, chunk], this._lastBytes.length + chunk.length)
    this._lastBytes = false
  }
  let len = chunk.length
  // Check if the data does not start with the end terminator (a first DATA line of a single dot arrives as "..").
  if (this._atDataStart && len >= 3 && Buffer.compare(chunk.subarray(0, 3), DOT_CRLF) === 0) {
    this._endDataMode(false, chunk.subarray(3), done)
    return
  }
  // check if the first symbol is a escape dot
  if (this._atDataStart && len >= 2 && chunk[0] === 0x2e && chunk[1] === 0x2e) {
    chunk = chunk.subarray(1)
    len--
    this._atDataStart = false
  }
  // seek for the stream ending: a dot at i (2 ≤ i < len − 2) right after a line feed
  for (let p = chunk.indexOf(LF_DOT, 1); p !== -1 && p + 1 < len - 2; p = chunk.indexOf(LF_DOT, p + 1)) {
    const i = p + 1
    // if the dot matches end terminator
    if (Buffer.compare(chunk.subarray(i - 2, i + 3), END_SEQUENCE) === 0) {
      const buf = chunk.subarray(0, i)
      this._countDataBytes(buf.length)
      this._endDataMode(buf, chunk.subarray(i + 3), done)
      return
    }
    // check if the dot is an escape char and remove it
    if (chunk[i + 1] === 0x2e) {
      const buf = chunk.subarray(0, i)
      this._lastBytes = false // clear remainder bytes
      this._countDataBytes(buf.length) // increment byte counter
      // emit what we already have and continue without the dot
      if (dataStream.writable) dataStream.write(buf)
      const rest = chunk.subarray(i + 1)
      setImmediate(() => this._feedDataStream(rest, done))
      return
    }
  }
  // keep the last bytes
  this._lastBytes = chunk.length < 4 ? chunk : chunk.subarray(chunk.length - 4)
  // if current chunk is longer than the remainder bytes we keep for later emit the available bytes
  if (this._lastBytes.length >= chunk.length) return done()
  const buf = chunk.subarray(0, chunk.length - this._lastBytes.length)
  this._countDataBytes(buf.length)
  if (!dataStream.writable) return done()
  // write to stream but stop if need to wait for drain
  const handled = dataStream.write(buf)
  if (handled || dataStream.destroyed) return done()
  // a stream that the application destroys never drains, it only closes
  const onDrain = () => {
    dataStream.removeListener('drain', onDrain)
    dataStream.removeListener('close', onDrain)
    done()
  }
  dataStream.once('drain', onDrain)
  dataStream.once('close', onDrain)
}

/** The installed smtp-server's version (its package.json). */
export function librarySmtpServerVersion(): string {
  const path = createRequire(import.meta.url).resolve('smtp-server/package.json')
  return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version
}

/** Puts the faster reader in place for every SMTP connection of this process, on the library version it was copied from only. */
export function installDataScan(): boolean {
  if (librarySmtpServerVersion() !== COPIED_FROM) return false
  SMTPStream.prototype._feedDataStream = feedDataStream
  return true
}
