import { halError } from '../errors.ts'
/**
 * A minimal DER reader: enough to take certificates and CMS apart by their
 * exact bytes (the issuer Name as encoded, the extensions, a key usage bit).
 */
export interface Node {
  tag: number
  /** Offset of the tag byte in the buffer. */
  start: number
  /** Offset of the first content byte. */
  contentStart: number
  /** Offset just past the element. */
  end: number
  /** The whole element: tag, length and content. */
  bytes: Buffer
  content: Buffer
}

export function read(buf: Buffer, offset = 0): Node {
  const tag = buf[offset]
  if (tag === undefined) throw halError('EDER_INVALID', 'DER: unexpected end of data')
  let pos = offset + 1
  let len = buf[pos++]
  if (len === undefined) throw halError('EDER_INVALID', 'DER: unexpected end of data')
  if (len & 0x80) {
    const n = len & 0x7f
    if (n === 0 || n > 4) throw halError('EDER_INVALID', 'DER: unsupported length form')
    if (pos + n > buf.length) throw halError('EDER_INVALID', 'DER: unexpected end of data')
    len = 0
    for (let i = 0; i < n; i++) len = len * 256 + buf[pos++]!
  }
  const end = pos + len
  if (end > buf.length) throw halError('EDER_INVALID', 'DER: element runs past the end of the data')
  return { tag, start: offset, contentStart: pos, end, bytes: buf.subarray(offset, end), content: buf.subarray(pos, end) }
}

/** The elements inside a constructed element. */
export function children(node: Node): Node[] {
  const out: Node[] = []
  for (let pos = 0; pos < node.content.length;) {
    const child = read(node.content, pos)
    out.push(child)
    pos = child.end
  }
  return out
}

export function decodeOid(content: Buffer): string {
  const parts: number[] = []
  let value = 0
  for (const byte of content) {
    value = value * 128 + (byte & 0x7f)
    if (!(byte & 0x80)) {
      if (parts.length === 0) parts.push(value < 80 ? Math.floor(value / 40) : 2, value < 80 ? value % 40 : value - 80)
      else parts.push(value)
      value = 0
    }
  }
  return parts.join('.')
}

export interface CertificateParts {
  tbs: Node
  serial: Node
  issuer: Node
  subject: Node
  spki: Node
  /** Extensions by OID: { critical, value (the OCTET STRING content) }. */
  extensions: Map<string, { critical: boolean; value: Buffer }>
}

/** Splits an X.509 certificate (RFC 5280 §4.1) into the parts signing code needs. */
export function certificateParts(certDer: Buffer): CertificateParts {
  const [tbs] = children(read(certDer))
  if (!tbs || tbs.tag !== 0x30) throw halError('EDER_INVALID', 'not an X.509 certificate')
  const f = children(tbs)
  const hasVersion = f[0]?.tag === 0xa0
  const [serial, , issuer, , subject, spki] = hasVersion ? f.slice(1) : f
  if (!serial || !issuer || !subject || !spki) throw halError('EDER_INVALID', 'X.509 certificate is missing fields')
  const extensions = new Map<string, { critical: boolean; value: Buffer }>()
  const extWrapper = f.find((n) => n.tag === 0xa3)
  if (extWrapper) {
    const list = children(extWrapper)[0]
    if (!list) throw halError('EDER_INVALID', 'DER: empty extensions')
    for (const ext of children(list)) {
      const [id, second, third] = children(ext)
      const critical = second?.tag === 0x01 && second.content[0] !== 0
      const value = second?.tag === 0x04 ? second : third
      if (id?.tag !== 0x06 || value?.tag !== 0x04) throw halError('EDER_INVALID', 'DER: malformed extension')
      extensions.set(decodeOid(id.content), { critical, value: value.content })
    }
  }
  return { tbs, serial, issuer, subject, spki, extensions }
}

/** KeyUsage (RFC 5280 §4.2.1.3) bit names present in a certificate, or undefined without the extension. */
export function keyUsage(parts: CertificateParts): Set<string> | undefined {
  const ext = parts.extensions.get('2.5.29.15')
  if (!ext) return undefined
  const bits = read(ext.value).content
  const names = [
    'digitalSignature',
    'nonRepudiation',
    'keyEncipherment',
    'dataEncipherment',
    'keyAgreement',
    'keyCertSign',
    'cRLSign',
    'encipherOnly',
    'decipherOnly',
  ]
  const out = new Set<string>()
  names.forEach((n, i) => {
    const byte = bits[1 + (i >> 3)]
    if (byte !== undefined && byte & (0x80 >> (i & 7))) out.add(n)
  })
  return out
}
