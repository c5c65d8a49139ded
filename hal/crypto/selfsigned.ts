import { generateKeyPairSync, type KeyObject, type X509Certificate } from 'node:crypto'
import { isIP } from 'node:net'
import * as der from './der.ts'
import { extension, KU, keyUsageValue, makeCertificate } from './issue.ts'

export interface SelfSigned {
  certPem: string
  keyPem: string
  certificate: X509Certificate
}

/**
 * A self-signed ECDSA P-256 / SHA-256 server certificate (S1: ECC-256, SHA-256),
 * for the submission listeners until the firm installs its own. SAN carries the
 * host name and, when given, IP addresses.
 */
export function makeSelfSignedServerCert(opts: { hostname: string; addresses?: readonly string[]; days?: number; now?: Date }): SelfSigned {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const now = opts.now ?? new Date()
  const san = der.sequence(
    der.implicit(2, Buffer.from(opts.hostname, 'ascii')),
    ...(opts.addresses ?? []).filter((a) => isIP(a)).map((a) => der.implicit(7, ipBytes(a))),
  )
  const certificate = makeCertificate({
    subject: [[der.OID.commonName, opts.hostname]],
    publicKey,
    signingKey: privateKey,
    notBefore: new Date(now.getTime() - 5 * 60_000),
    notAfter: new Date(now.getTime() + (opts.days ?? 825) * 86_400_000),
    extensions: [
      extension(der.OID.basicConstraints, true, der.sequence()),
      extension(der.OID.keyUsage, true, keyUsageValue(KU.digitalSignature)),
      extension(der.OID.extKeyUsage, false, der.sequence(der.oid(der.OID.serverAuth))),
      extension(der.OID.subjectAltName, false, san),
    ],
  })
  return { certPem: certificate.toString(), keyPem: pkcs8(privateKey), certificate }
}

function pkcs8(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString()
}

function ipBytes(address: string): Buffer {
  if (isIP(address) === 4) return Buffer.from(address.split('.').map(Number))
  const [head = '', tail = ''] = address.split('::')
  const h = head ? head.split(':') : []
  const t = tail ? tail.split(':') : []
  const groups = address.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h
  return Buffer.from(
    groups.flatMap((g) => {
      const n = parseInt(g, 16)
      return [n >> 8, n & 0xff]
    }),
  )
}
