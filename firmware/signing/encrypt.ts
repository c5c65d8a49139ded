import { constants, createCipheriv, publicEncrypt, randomBytes, type X509Certificate } from 'node:crypto'
import * as der from '../../hal/crypto/der.ts'
import { certificateParts } from '../../hal/crypto/der-read.ts'
import { base64Lines } from '../mime/encode.ts'
import { readHeader } from '../mime/header.ts'
import { boxError } from '../box-errors.ts'
import { CONTENT_HEADERS } from './canonical.ts'
import { CMS_OID, sha256Algorithm } from './cms.ts'

export type ContentCipher = 'aes-256-cbc' | 'aes-256-gcm'

/** RSAES-OAEP-params (RFC 4055 §4.1) with SHA-256 and MGF1-SHA-256; pSource left at its default. */
function oaepAlgorithm(): der.Der {
  return der.sequence(
    der.oid(CMS_OID.rsaesOaep),
    der.sequence(der.explicit(0, sha256Algorithm()), der.explicit(1, der.sequence(der.oid(CMS_OID.mgf1), sha256Algorithm()))),
  )
}

function recipientInfo(cert: X509Certificate, contentKey: Buffer): der.Der {
  if (cert.publicKey.asymmetricKeyType !== 'rsa') throw boxError('ESTART_REFUSED', 'recipient certificate must carry an RSA key')
  const parts = certificateParts(cert.raw)
  const encryptedKey = publicEncrypt({ key: cert.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, contentKey)
  // KeyTransRecipientInfo v0 with IssuerAndSerialNumber (RFC 5652 §6.2.1).
  return der.sequence(der.integer(0), der.sequence(parts.issuer.bytes, parts.serial.bytes), oaepAlgorithm(), der.octetString(encryptedKey))
}

/**
 * CMS EnvelopedData (AES-256-CBC, RFC 5652 §6) or AuthEnvelopedData
 * (AES-256-GCM, RFC 5083/5084) for the given recipients, with a fresh content
 * key sent to each under RSA-OAEP. Returns DER ContentInfo.
 */
export function envelope(content: Buffer, recipients: readonly X509Certificate[], cipher: ContentCipher): Buffer {
  const key = randomBytes(32)
  const infos = der.setOf(...recipients.map((r) => recipientInfo(r, key)))
  if (cipher === 'aes-256-cbc') {
    const iv = randomBytes(16)
    const c = createCipheriv('aes-256-cbc', key, iv)
    const encrypted = Buffer.concat([c.update(content), c.final()])
    const eci = der.sequence(der.oid(CMS_OID.data), der.sequence(der.oid(CMS_OID.aes256Cbc), der.octetString(iv)), der.implicit(0, encrypted))
    return der.sequence(der.oid(CMS_OID.envelopedData), der.explicit(0, der.sequence(der.integer(0), infos, eci)))
  }
  const nonce = randomBytes(12)
  const c = createCipheriv('aes-256-gcm', key, nonce)
  const encrypted = Buffer.concat([c.update(content), c.final()])
  // GCMParameters: icvLen defaults to 12, so a 16-byte tag must be stated (RFC 5084 §3.2).
  const params = der.sequence(der.octetString(nonce), der.integer(16))
  const aeci = der.sequence(der.oid(CMS_OID.data), der.sequence(der.oid(CMS_OID.aes256Gcm), params), der.implicit(0, encrypted))
  return der.sequence(der.oid(CMS_OID.authEnvelopedData), der.explicit(0, der.sequence(der.integer(0), infos, aeci, der.octetString(c.getAuthTag()))))
}

/**
 * Sign-then-encrypt (RFC 8551 §3.7): the signed entity (its Content-* fields
 * and body) becomes application/pkcs7-mime; the message's other header fields
 * stay in clear outside.
 */
export function smimeEncrypt(signedMessage: Buffer, recipients: readonly X509Certificate[], cipher: ContentCipher): Buffer {
  const m = readHeader(signedMessage)
  const outer = m.headers.filter((h) => !CONTENT_HEADERS.has(h.key) && h.key !== 'mime-version').map((h) => h.raw)
  const inner = Buffer.concat([...m.headers.filter((h) => CONTENT_HEADERS.has(h.key)).map((h) => h.raw), Buffer.from('\r\n'), m.body])
  const cms = envelope(inner, recipients, cipher)
  const smimeType = cipher === 'aes-256-gcm' ? 'authEnveloped-data' : 'enveloped-data'
  return Buffer.concat([
    ...outer,
    Buffer.from(
      'MIME-Version: 1.0\r\n' +
        `Content-Type: application/pkcs7-mime; smime-type=${smimeType}; name="smime.p7m"\r\n` +
        'Content-Transfer-Encoding: base64\r\n' +
        'Content-Disposition: attachment; filename="smime.p7m"\r\n' +
        '\r\n',
    ),
    base64Lines(cms),
  ])
}
