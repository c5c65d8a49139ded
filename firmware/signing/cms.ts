import { createHash, type X509Certificate } from 'node:crypto'
import * as der from '../../hal/crypto/der.ts'
import { certificateParts } from '../../hal/crypto/der-read.ts'
import type { SignAlgorithm } from '../../hal/hsm/index.ts'

/** OIDs used in CMS (RFC 5652), S/MIME (RFC 8551) and ESS (RFC 5035). */
export const CMS_OID = {
  data: '1.2.840.113549.1.7.1',
  signedData: '1.2.840.113549.1.7.2',
  envelopedData: '1.2.840.113549.1.7.3',
  authEnvelopedData: '1.2.840.113549.1.9.16.1.23',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  signingTime: '1.2.840.113549.1.9.5',
  smimeCapabilities: '1.2.840.113549.1.9.15',
  signingCertificateV2: '1.2.840.113549.1.9.16.2.47',
  sha256: '2.16.840.1.101.3.4.2.1',
  rsaEncryption: '1.2.840.113549.1.1.1',
  rsassaPss: '1.2.840.113549.1.1.10',
  mgf1: '1.2.840.113549.1.1.8',
  rsaesOaep: '1.2.840.113549.1.1.7',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  aes128Cbc: '2.16.840.1.101.3.4.1.2',
  aes256Cbc: '2.16.840.1.101.3.4.1.42',
  aes128Gcm: '2.16.840.1.101.3.4.1.6',
  aes256Gcm: '2.16.840.1.101.3.4.1.46',
} as const

/** SHA-256 AlgorithmIdentifier: parameters absent (RFC 5754 §2). */
export const sha256Algorithm = () => der.sequence(der.oid(CMS_OID.sha256))

export interface CmsSigner {
  certificate: X509Certificate
  chain: readonly X509Certificate[]
  algorithm: SignAlgorithm
  /** Signs the DER of the signed attributes; with an HSM this is a token call. */
  sign(data: Buffer): Promise<Buffer>
}

function signatureAlgorithm(alg: SignAlgorithm): der.Der {
  switch (alg) {
    case 'rsa-pkcs1-sha256':
      // rsaEncryption, as RFC 5754 §3.2 and common clients expect for PKCS#1 v1.5 in SignerInfo.
      return der.sequence(der.oid(CMS_OID.rsaEncryption), der.nullValue())
    case 'rsa-pss-sha256':
      return der.sequence(der.oid(CMS_OID.rsassaPss), pssParams())
    case 'ecdsa-p256-sha256':
      return der.sequence(der.oid(CMS_OID.ecdsaWithSha256))
    case 'ed25519':
      return der.sequence(der.oid('1.3.101.112')) // RFC 8419
  }
}

/** RSASSA-PSS-params (RFC 4055 §3.1): SHA-256, MGF1 with SHA-256, salt length 32. */
export function pssParams(): der.Der {
  return der.sequence(
    der.explicit(0, sha256Algorithm()),
    der.explicit(1, der.sequence(der.oid(CMS_OID.mgf1), sha256Algorithm())),
    der.explicit(2, der.integer(32)),
  )
}

function attribute(type: string, ...values: der.Der[]): der.Der {
  return der.sequence(der.oid(type), der.setOf(...values))
}

/** The algorithms we can decrypt… none: this lists what recipients may use to encrypt to the firm (RFC 8551 §2.5.2). */
function smimeCapabilities(): der.Der {
  return der.sequence(
    der.sequence(der.oid(CMS_OID.aes256Gcm)),
    der.sequence(der.oid(CMS_OID.aes128Gcm)),
    der.sequence(der.oid(CMS_OID.aes256Cbc)),
    der.sequence(der.oid(CMS_OID.aes128Cbc)),
  )
}

/** ESS signingCertificateV2 (RFC 5035 §5.4.1.1): binds the signature to this exact certificate. */
function signingCertificateV2(cert: X509Certificate): der.Der {
  const parts = certificateParts(cert.raw)
  const issuerSerial = der.sequence(der.sequence(der.explicit(4, parts.issuer.bytes)), parts.serial.bytes)
  // hashAlgorithm is omitted: its DEFAULT is SHA-256 (a DER encoder must omit defaults).
  const essCertIdV2 = der.sequence(der.octetString(createHash('sha256').update(cert.raw).digest()), issuerSerial)
  return der.sequence(der.sequence(essCertIdV2))
}

/**
 * The DER SET OF signed attributes (RFC 5652 §5.3, §5.4): contentType,
 * signingTime, messageDigest, smimeCapabilities, signingCertificateV2, sorted
 * by their encodings as DER requires. This exact byte string is what is signed.
 * S2 (non-repudiation, timestamps): the signing time is inside what the HSM signs.
 */
export function signedAttributes(digest: Buffer, cert: X509Certificate, signingTime: Date): der.Der {
  return der.setOf(
    attribute(CMS_OID.contentType, der.oid(CMS_OID.data)),
    attribute(CMS_OID.signingTime, der.time(signingTime)),
    attribute(CMS_OID.messageDigest, der.octetString(digest)),
    attribute(CMS_OID.smimeCapabilities, smimeCapabilities()),
    attribute(CMS_OID.signingCertificateV2, signingCertificateV2(cert)),
  )
}

/**
 * A detached CMS SignedData (RFC 5652 §5) over the content whose SHA-256 is
 * `digest` (the caller hashes it, in the pass that also takes the DKIM body
 * hash), signed by `signer`, carrying the signer certificate and its chain;
 * returned as DER ContentInfo.
 */
export async function signedData(digest: Buffer, signer: CmsSigner, signingTime: Date): Promise<Buffer> {
  const attrs = signedAttributes(digest, signer.certificate, signingTime)
  const signature = await signer.sign(attrs)
  const parts = certificateParts(signer.certificate.raw)
  const signerInfo = der.sequence(
    der.integer(1),
    der.sequence(parts.issuer.bytes, parts.serial.bytes), // IssuerAndSerialNumber, bytes as in the certificate
    sha256Algorithm(),
    Buffer.concat([Buffer.from([0xa0]), attrs.subarray(1)]), // [0] IMPLICIT: same bytes, context tag
    signatureAlgorithm(signer.algorithm),
    der.octetString(signature),
  )
  const certificates = [signer.certificate, ...signer.chain].map((c) => c.raw)
  const sd = der.sequence(
    der.integer(1),
    der.setOf(sha256Algorithm()),
    der.sequence(der.oid(CMS_OID.data)), // eContent absent: detached
    Buffer.concat([Buffer.from([0xa0]), der.setOf(...certificates).subarray(1)]),
    der.setOf(signerInfo),
  )
  return der.sequence(der.oid(CMS_OID.signedData), der.explicit(0, sd))
}
