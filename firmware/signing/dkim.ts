import { createHash, type KeyObject } from 'node:crypto'
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
  return Buffer.concat(relaxedBodyParts(body))
}

/** The canonical body as pieces of the original (no copy of a large body): what the body hash is taken over. */
export function relaxedBodyParts(body: Buffer): Buffer[] {
  // Trailing empty lines go first, so the pieces below never need cutting back.
  let end = body.length
  for (;;) {
    let e = end
    while (e > 0 && (body[e - 1] === 0x20 || body[e - 1] === 0x09)) e--
    if (e >= 2 && body[e - 2] === 0x0d && body[e - 1] === 0x0a) end = e - 2
    else break
  }
  if (end === 0) return []
  const src = body.subarray(0, end)
  const out: Buffer[] = []
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
      out.push(src.subarray(copied, i))
      if (!atLineEnd) out.push(SP)
      copied = j
    }
    i = nextWsp(j)
  }
  out.push(src.subarray(copied), CRLF)
  return out
}

const SP = Buffer.from(' ')
const CRLF = Buffer.from('\r\n')

/** Signs `message`, which must have CRLF line endings (the signing stage makes sure). */
export async function dkimSign(message: Buffer, key: DkimKey, time: Date): Promise<Buffer> {
  const msg = message
  const entity = readHeader(msg)
  const bodyHash = createHash('sha256')
  for (const part of relaxedBodyParts(entity.body)) bodyHash.update(part)
  const bh = bodyHash.digest('base64')

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
  const input = algorithm === 'ed25519-sha256' ? createHash('sha256').update(signed).digest() : signed
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
