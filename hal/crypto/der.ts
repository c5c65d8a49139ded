/**
 * A minimal DER (X.690) writer: enough to build certificates, CSRs and CMS
 * structures whose bytes we control exactly (a DER SET OF must be sorted; some
 * libraries keep the caller's order and produce BER that breaks on re-encoding).
 */

import { createHash, type KeyObject } from 'node:crypto'
import { halError } from '../errors.ts'

export type Der = Buffer

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n])
  const bytes: number[] = []
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

export function tlv(tag: number, content: Buffer): Der {
  return Buffer.concat([Buffer.from([tag]), length(content.length), content])
}

export const sequence = (...items: Der[]): Der => tlv(0x30, Buffer.concat(items))

/** DER SET OF: elements sorted by their encodings (X.690 §11.6). */
export const setOf = (...items: Der[]): Der => tlv(0x31, Buffer.concat([...items].sort((a, b) => Buffer.compare(a, b))))

/** [n] EXPLICIT / constructed context tag. */
export const explicit = (n: number, content: Der): Der => tlv(0xa0 | n, content)

/** [n] IMPLICIT primitive context tag. */
export const implicit = (n: number, content: Buffer): Der => tlv(0x80 | n, content)

export const nullValue = (): Der => Buffer.from([0x05, 0x00])

export const boolean = (v: boolean): Der => tlv(0x01, Buffer.from([v ? 0xff : 0x00]))

/** INTEGER from a non-negative bigint or unsigned big-endian bytes. */
export function integer(v: bigint | number | Buffer): Der {
  let bytes: Buffer
  if (Buffer.isBuffer(v)) {
    let i = 0
    while (i < v.length - 1 && v[i] === 0) i++
    bytes = v.subarray(i)
  } else {
    let n = BigInt(v)
    if (n < 0n) throw new RangeError('negative INTEGER not supported')
    const out: number[] = []
    do {
      out.unshift(Number(n & 0xffn))
      n >>= 8n
    } while (n > 0n)
    bytes = Buffer.from(out)
  }
  if (bytes.length === 0) bytes = Buffer.from([0])
  if (bytes[0]! & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes])
  return tlv(0x02, bytes)
}

const oidCache = new Map<string, Der>()

/** OBJECT IDENTIFIER; encodings are cached (the same few OIDs are written for every statement). */
export function oid(dotted: string): Der {
  let cached = oidCache.get(dotted)
  if (!cached) {
    cached = encodeOid(dotted)
    oidCache.set(dotted, cached)
  }
  return cached
}

function encodeOid(dotted: string): Der {
  const parts = dotted.split('.').map((p) => BigInt(p))
  if (parts.length < 2) throw new RangeError(`bad OID ${dotted}`)
  const out: number[] = []
  const encode = (n: bigint) => {
    const chunk: number[] = [Number(n & 0x7fn)]
    for (n >>= 7n; n > 0n; n >>= 7n) chunk.unshift(Number(n & 0x7fn) | 0x80)
    out.push(...chunk)
  }
  encode(parts[0]! * 40n + parts[1]!)
  for (const p of parts.slice(2)) encode(p)
  return tlv(0x06, Buffer.from(out))
}

export const octetString = (b: Buffer): Der => tlv(0x04, b)
export const bitString = (b: Buffer, unusedBits = 0): Der => tlv(0x03, Buffer.concat([Buffer.from([unusedBits]), b]))
export const utf8String = (s: string): Der => tlv(0x0c, Buffer.from(s, 'utf8'))
export const printableString = (s: string): Der => tlv(0x13, Buffer.from(s, 'ascii'))
export const ia5String = (s: string): Der => tlv(0x16, Buffer.from(s, 'ascii'))

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
export function time(d: Date): Der {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) // YYYYMMDDHHMMSS
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(`${iso.slice(2)}Z`)) : tlv(0x18, Buffer.from(`${iso}Z`))
}

/** An X.501 Name of single-valued RDNs, e.g. [['2.5.4.3', 'mail.example']]. */
export function name(rdns: readonly (readonly [string, string])[]): Der {
  return sequence(...rdns.map(([type, value]) => setOf(sequence(oid(type), directoryString(type, value)))))
}

/** RFC 5280 Appendix A: countryName and serialNumber are PrintableString, emailAddress IA5String. */
function directoryString(type: string, value: string): Der {
  if (type === OID.countryName || type === OID.serialNumber) return printableString(value)
  if (type === OID.emailAddress) return ia5String(value)
  return utf8String(value)
}

const SHORT_NAMES: Record<string, string> = {
  CN: '2.5.4.3',
  O: '2.5.4.10',
  OU: '2.5.4.11',
  C: '2.5.4.6',
  L: '2.5.4.7',
  ST: '2.5.4.8',
  serialNumber: '2.5.4.5',
  emailAddress: '1.2.840.113549.1.9.1',
}

/** Parses "CN=Bank,O=Bank Ltd,C=TW" (no escaped commas) into RDNs for name(). */
export function parseName(text: string): [string, string][] {
  return text.split(',').map((part) => {
    const eq = part.indexOf('=')
    const key = part.slice(0, eq).trim()
    const value = part.slice(eq + 1).trim()
    const type = SHORT_NAMES[key]
    if (eq < 1 || !type || !value)
      throw halError('ENAME_INVALID', `cannot read "${part.trim()}" in the name "${text}" (use CN, O, OU, C, L, ST, serialNumber, emailAddress)`)
    return [type, value]
  })
}

export const OID = {
  commonName: '2.5.4.3',
  organizationName: '2.5.4.10',
  countryName: '2.5.4.6',
  serialNumber: '2.5.4.5',
  emailAddress: '1.2.840.113549.1.9.1',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  emailProtection: '1.3.6.1.5.5.7.3.4',
  rsaEncryption: '1.2.840.113549.1.1.1',
  extensionRequest: '1.2.840.113549.1.9.14',
} as const

/** A public key's fingerprint: the SHA-256 of its DER SubjectPublicKeyInfo, in hex. */
export const spkiSha256 = (key: KeyObject): string =>
  createHash('sha256')
    .update(key.export({ type: 'spki', format: 'der' }))
    .digest('hex')

export function toPem(label: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n')
  return `-----BEGIN ${label}-----\n${b64}-----END ${label}-----\n`
}
