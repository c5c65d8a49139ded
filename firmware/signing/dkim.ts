import { createHash, type Hash, type KeyObject } from 'node:crypto'
import { readHeader } from '../mime/header.ts'
import { prepend } from './headroom.ts'

/**
 * DKIM signing (M4; RFC 6376) with the key in the HSM: no Node library lets a
 * token do the signing, so canonicalisation and hashing are done here and the
 * token signs the canonical header block (rsa-sha256, relaxed/relaxed, no l=).
 */

/** Header fields signed when present; From, To, Subject and Date are over-signed so none can be added later. */
export const SIGNED_HEADERS = [
  'from',
  'to',
  'cc',
  'subject',
  'date',
  'message-id',
  'reply-to',
  'mime-version',
  'content-type',
  'content-transfer-encoding',
  'in-reply-to',
  'references',
  'list-id',
  'list-unsubscribe',
  'list-unsubscribe-post',
  'disposition-notification-to',
]
const OVERSIGNED = ['from', 'to', 'subject', 'date']

export interface DkimKey {
  domain: string
  selector: string
  /** rsa-sha256 (RFC 6376) or ed25519-sha256 (RFC 8463). Default rsa-sha256. */
  algorithm?: 'rsa-sha256' | 'ed25519-sha256'
  /**
   * rsa-sha256: signs the canonical header block with RSASSA-PKCS1-v1_5/SHA-256
   * (CKM_SHA256_RSA_PKCS). ed25519-sha256: signs its SHA-256 digest with pure
   * Ed25519 (CKM_EDDSA), as RFC 8463 §3 defines.
   */
  sign(data: Buffer): Promise<Buffer>
}

export interface DkimOptions {
  /**
   * bh= as already taken over exactly this message's body, by the S/MIME pass that made the body
   * (#35 3.1) or by the first of two signatures over it; taken here when absent.
   */
  bodyHash?: string
  hash?: HashFactory
}

/**
 * RFC 6376 §3.4.2 relaxed header canonicalisation of one field: name lower
 * case, folding removed, whitespace runs one SP, none at either end of the
 * value. One pass over the characters (regular-expression replacement with a
 * match per run grew faster than the input on V8).
 */
export function relaxedHeader(raw: string): string {
  const colon = raw.indexOf(':')
  const name = raw.slice(0, colon).trim().toLowerCase()
  const wsp = (c: number) => c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a
  let start = colon + 1
  let end = raw.length
  while (start < end && wsp(raw.charCodeAt(start))) start++
  while (end > start && wsp(raw.charCodeAt(end - 1))) end--
  const out: string[] = []
  let span = start
  for (let i = start; i < end;) {
    const c = raw.charCodeAt(i)
    if (!wsp(c)) {
      i++
      continue
    }
    let j = i + 1
    while (j < end && wsp(raw.charCodeAt(j))) j++
    // A single SP stays in the span; any other run (tabs, folding, several) becomes one SP.
    if (!(j === i + 1 && c === 0x20)) {
      out.push(raw.slice(span, i), ' ')
      span = j
    }
    i = j
  }
  out.push(raw.slice(span, end))
  return `${name}:${out.join('')}`
}

/**
 * RFC 6376 §3.4.4 relaxed body canonicalisation: whitespace runs become one
 * SP, whitespace at line ends goes, trailing empty lines go. Works on the
 * bytes, touching only the places where there is whitespace (base64
 * attachments, most of a statement, have none).
 */
export function relaxedBody(body: Buffer): Buffer {
  const out: Buffer[] = []
  new RelaxedBody((p) => out.push(p)).update(body).end()
  return Buffer.concat(out)
}

/** The base64 SHA-256 body hash (bh=, RFC 6376 §3.7) of a whole body. */
export function bodyHash(body: Buffer, hash: HashFactory = sha256): string {
  const h = hash()
  new RelaxedBody((p) => h.update(p)).update(body).end()
  return h.digest('base64')
}

/** The body hash of a whole message (its body after the header block). */
export function messageBodyHash(message: Buffer, hash: HashFactory = sha256): string {
  return bodyHash(readHeader(message).body, hash)
}

/** Makes the SHA-256 hashes signing uses; a test passes one that counts what each is fed (#35). */
export type HashFactory = () => Hash
export const sha256: HashFactory = () => createHash('sha256')

/**
 * Relaxed body canonicalisation over pieces as they come, handing the canonical
 * form on as pieces of the input (no copy of a large body). S/MIME signing feeds
 * it the entity in the same pass that digests the entity for the CMS signature,
 * so the DKIM body hash needs no pass of its own (#35 3.1). Lines are
 * canonicalised whole: a piece is cut after its last LF and the rest waits for
 * the next. Empty lines are held back until a non-empty line follows them, and
 * dropped at the end.
 */
export class RelaxedBody {
  readonly #sink: (part: Buffer) => void
  #carry: Buffer[] = []
  /** Line ends not yet passed on: the last line's own, and the empty lines after it. */
  #held = 0
  #wrote = false

  constructor(sink: (part: Buffer) => void) {
    this.#sink = sink
  }

  update(piece: Buffer): this {
    let from = 0
    if (this.#carry.length > 0) {
      const lf = piece.indexOf(0x0a)
      if (lf === -1) {
        this.#carry.push(piece)
        return this
      }
      this.#carry.push(piece.subarray(0, lf + 1))
      this.#lines(Buffer.concat(this.#carry))
      this.#carry = []
      from = lf + 1
    }
    const last = piece.lastIndexOf(0x0a)
    if (last >= from) {
      this.#lines(piece.subarray(from, last + 1))
      from = last + 1
    }
    if (from < piece.length) this.#carry.push(piece.subarray(from))
    return this
  }

  /** The body is complete: a last line without its line end is taken, and the final CRLF given. */
  end(): void {
    if (this.#carry.length > 0) this.#lines(Buffer.concat(this.#carry))
    this.#carry = []
    if (this.#wrote) this.#sink(CRLF)
  }

  #lines(seg: Buffer): void {
    const { end, breaks } = trailingEmpty(seg)
    if (end === 0) {
      this.#held += breaks
      return
    }
    for (let i = 0; i < this.#held; i++) this.#sink(CRLF)
    this.#held = breaks
    this.#wrote = true
    relaxedLine(seg.subarray(0, end), this.#sink)
  }
}

/**
 * Where the last line of `buf` with something other than whitespace on it ends,
 * and how many line ends come after it (empty and whitespace-only lines).
 */
function trailingEmpty(buf: Buffer): { end: number; breaks: number } {
  let end = buf.length
  let breaks = 0
  for (;;) {
    let e = end
    while (e > 0 && (buf[e - 1] === 0x20 || buf[e - 1] === 0x09)) e--
    if (e >= 2 && buf[e - 2] === 0x0d && buf[e - 1] === 0x0a) {
      end = e - 2
      breaks++
    } else {
      // A first line of whitespace only is an empty line too (RFC 6376 §3.4.4: its whitespace goes first).
      if (e === 0 && breaks > 0) end = 0
      return { end, breaks }
    }
  }
}

/** Lines (CRLF between them, none at the end) with whitespace runs made one SP and none left at line ends. */
function relaxedLine(src: Buffer, sink: (part: Buffer) => void): void {
  let copied = 0
  // The next space and the next tab, each searched again only once passed: searching both from
  // every whitespace run would rescan to the end for the rarer one (quadratic on hostile input).
  let sp = -2
  let tab = -2
  const nextWsp = (from: number): number => {
    if (sp !== -1 && sp < from) sp = src.indexOf(0x20, from)
    if (tab !== -1 && tab < from) tab = src.indexOf(0x09, from)
    return sp === -1 ? tab : tab === -1 ? sp : Math.min(sp, tab)
  }
  let i = nextWsp(0)
  while (i !== -1) {
    let j = i
    while (src[j] === 0x20 || src[j] === 0x09) j++
    const atLineEnd = j === src.length || (src[j] === 0x0d && src[j + 1] === 0x0a)
    if (atLineEnd || j - i > 1 || src[i] === 0x09) {
      if (i > copied) sink(src.subarray(copied, i))
      if (!atLineEnd) sink(SP)
      copied = j
    }
    i = nextWsp(j)
  }
  if (copied < src.length) sink(src.subarray(copied))
}

const SP = Buffer.from(' ')
const CRLF = Buffer.from('\r\n')

/** Signs `message`, which must have CRLF line endings (the signing stage makes sure). */
export async function dkimSign(message: Buffer, key: DkimKey, time: Date, opts: DkimOptions = {}): Promise<Buffer> {
  const msg = message
  const entity = readHeader(msg)
  const bh = opts.bodyHash ?? bodyHash(entity.body, opts.hash)

  // Instances are taken from the bottom up (RFC 6376 §5.4.2); an over-signed
  // name with no instance left signs the null string.
  const remaining = new Map<string, string[]>()
  for (const h of entity.headers) {
    const list = remaining.get(h.key) ?? []
    list.push(h.raw.toString('latin1'))
    remaining.set(h.key, list)
  }
  const names = SIGNED_HEADERS.filter((n) => remaining.has(n))
  for (const n of OVERSIGNED) if (remaining.has(n)) names.push(n)
  const canon: string[] = []
  for (const n of names) {
    const inst = remaining.get(n)!
    const raw = inst.pop()
    if (raw !== undefined) canon.push(`${relaxedHeader(raw)}\r\n`)
  }

  const t = Math.floor(time.getTime() / 1000)
  const algorithm = key.algorithm ?? 'rsa-sha256'
  const prefix =
    `DKIM-Signature: v=1; a=${algorithm}; c=relaxed/relaxed; d=${key.domain}; s=${key.selector};\r\n` +
    ` t=${t}; h=${fold(names.join(':'), ':')};\r\n` +
    ` bh=${bh};\r\n` +
    ' b='
  const signed = Buffer.from(canon.join('') + relaxedHeader(prefix), 'latin1')
  const input = algorithm === 'ed25519-sha256' ? (opts.hash ?? sha256)().update(signed).digest() : signed
  const b = (await key.sign(input)).toString('base64')
  const header = `${prefix}${b.replace(/.{1,72}/g, '$&\r\n ').replace(/\r\n $/, '')}\r\n`
  // In front of the message without copying it when it was made with room (an S/MIME-signed one is).
  return prepend(Buffer.from(header, 'latin1'), msg)
}

/** Folds a long tag value after separators so header lines stay short (FWS is allowed there, RFC 6376 §3.5). */
function fold(value: string, sep: string): string {
  const lines: string[] = []
  let line = ''
  for (const part of value.split(sep)) {
    if (line && line.length + part.length > 60) {
      lines.push(line)
      line = part
    } else line = line ? `${line}${sep}${part}` : part
  }
  lines.push(line)
  return lines.join(`${sep}\r\n  `)
}

/** The TXT record to publish at `<selector>._domainkey.<domain>` (RFC 6376 §3.6.1), in zone-file form. */
export function dkimDnsRecord(domain: string, selector: string, publicKey: KeyObject): string {
  const value = dkimTxtValue(publicKey)
  const chunks = value.match(/.{1,250}/g) ?? []
  return `${selector}._domainkey.${domain}. IN TXT ( ${chunks.map((c) => `"${c}"`).join(' ')} )`
}

/**
 * The record's value as one string (what a DNS resolver returns joined): an
 * RSA key as its SubjectPublicKeyInfo, an Ed25519 key as the bare 32 bytes (RFC 8463 §4.2).
 */
export function dkimTxtValue(publicKey: KeyObject): string {
  if (publicKey.asymmetricKeyType === 'ed25519') {
    return `v=DKIM1; k=ed25519; p=${Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url').toString('base64')}`
  }
  return `v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`
}
