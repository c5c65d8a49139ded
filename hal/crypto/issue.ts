import { randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto'
import * as der from './der.ts'
import { certificateParts } from './der-read.ts'

/**
 * X.509 v3 certificates (RFC 5280) built from their parts: the self-made TLS
 * certificate, and the development CA with the S/MIME certificate it issues
 * to a key in the HSM. Signed with ECDSA P-256 / SHA-256 (S1) by a key held in
 * memory only for as long as the call.
 */
export interface CertificateSpec {
  /** Subject as RDNs, e.g. [[der.OID.commonName, 'mail.example']]. */
  subject: readonly (readonly [string, string])[]
  /** The subject's public key. */
  publicKey: KeyObject
  /** Who signs: its certificate (for the issuer name) and EC P-256 private key; absent: self-signed with `signingKey`. */
  issuer?: X509Certificate
  signingKey: KeyObject
  notBefore: Date
  notAfter: Date
  /** Extensions (see `extension()`). */
  extensions: readonly der.Der[]
}

export function makeCertificate(spec: CertificateSpec): X509Certificate {
  const subject = der.name(spec.subject)
  const issuer = spec.issuer ? certificateParts(spec.issuer.raw).subject.bytes : subject
  const algorithm = der.sequence(der.oid(der.OID.ecdsaWithSha256))
  const serial = randomBytes(16)
  serial[0]! &= 0x7f // a positive INTEGER of 16 bytes (RFC 5280 §4.1.2.2 allows up to 20)
  const tbs = der.sequence(
    der.explicit(0, der.integer(2)),
    der.integer(serial),
    algorithm,
    issuer,
    der.sequence(der.time(spec.notBefore), der.time(spec.notAfter)),
    subject,
    spec.publicKey.export({ type: 'spki', format: 'der' }),
    der.explicit(3, der.sequence(...spec.extensions)),
  )
  const signature = sign('sha256', tbs, spec.signingKey)
  return new X509Certificate(der.sequence(tbs, algorithm, der.bitString(signature)))
}

export function extension(id: string, critical: boolean, value: der.Der): der.Der {
  return der.sequence(der.oid(id), ...(critical ? [der.boolean(true)] : []), der.octetString(value))
}

/** Key usage bits (RFC 5280 §4.2.1.3), first byte. */
export const KU = { digitalSignature: 0x80, nonRepudiation: 0x40, keyCertSign: 0x04, cRLSign: 0x02 } as const

/** A KeyUsage extension value from bits of its first byte. */
export function keyUsageValue(bits: number): der.Der {
  let unused = 0
  while (unused < 7 && !(bits & (1 << unused))) unused++
  return der.bitString(Buffer.from([bits]), unused)
}

/** Extensions of a CA that only issues end-entity certificates. */
export function caExtensions(): der.Der[] {
  return [
    extension(der.OID.basicConstraints, true, der.sequence(der.boolean(true), der.integer(0))),
    extension(der.OID.keyUsage, true, keyUsageValue(KU.keyCertSign | KU.cRLSign)),
  ]
}

/** Extensions of an S/MIME signing certificate (RFC 8550 §4.4): signatures, e-mail protection, the addresses. */
export function smimeExtensions(emails: readonly string[]): der.Der[] {
  return [
    extension(der.OID.basicConstraints, true, der.sequence()),
    extension(der.OID.keyUsage, true, keyUsageValue(KU.digitalSignature | KU.nonRepudiation)),
    extension(der.OID.extKeyUsage, false, der.sequence(der.oid(der.OID.emailProtection))),
    extension(der.OID.subjectAltName, false, der.sequence(...emails.map((e) => der.implicit(1, Buffer.from(e, 'ascii'))))),
  ]
}
