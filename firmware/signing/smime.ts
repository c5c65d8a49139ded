import { randomBytes } from 'node:crypto'
import { base64Lines } from '../mime/encode.ts'
import { concatWithHeadroom } from './headroom.ts'
import { splitForSigning } from './canonical.ts'
import { signedData, type CmsSigner } from './cms.ts'
import { RelaxedBody, sha256, type HashFactory } from './dkim.ts'

const MICALG = 'sha-256'
/** Room kept in front of the signed message for the DKIM-Signature fields (two of them, about 1 KB together). */
const DKIM_HEADROOM = 4096

export interface SmimeSigned {
  message: Buffer
  /** The DKIM body hash (bh=, relaxed) of `message`, when asked for: taken in the pass that digests the entity. */
  dkimBodyHash?: string
}

/**
 * S/MIME signing (M5; RFC 8551 §3.5.3, RFC 1847): the message becomes
 * multipart/signed with the original body entity, made 7-bit safe, as its
 * first part and a detached CMS SignedData as application/pkcs7-signature.
 * The message's own header fields (From, To, Subject, Date, Message-ID…) stay
 * outside and are kept byte for byte.
 *
 * One pass over the entity (#35 3.1): each piece goes to the CMS digest and,
 * when `dkimBodyHash` is asked for, to the DKIM body canonicalisation, whose
 * hash then also covers the signature part; DKIM signing needs no pass of its own.
 */
export async function smimeSign(
  message: Buffer,
  signer: CmsSigner,
  signingTime: Date,
  opts: { dkimBodyHash?: boolean; hash?: HashFactory } = {},
): Promise<SmimeSigned> {
  const { outer, entity } = splitForSigning(message)
  const boundary = `----=_sg_${randomBytes(12).toString('hex')}`
  const header = Buffer.from(
    'MIME-Version: 1.0\r\n' +
      `Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=${MICALG};\r\n boundary="${boundary}"\r\n` +
      '\r\n',
  )
  const opening = Buffer.from(`This is an S/MIME signed message\r\n\r\n--${boundary}\r\n`)
  const hash = opts.hash ?? sha256
  const digest = hash()
  const bodyHash = opts.dkimBodyHash ? hash() : undefined
  const body = bodyHash ? new RelaxedBody((p) => bodyHash.update(p)) : undefined
  body?.update(opening)
  for (const piece of entity) {
    digest.update(piece)
    body?.update(piece)
  }
  const cms = await signedData(digest.digest(), signer, signingTime)
  const closing = [
    Buffer.from(
      `\r\n--${boundary}\r\n` +
        'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n' +
        'Content-Transfer-Encoding: base64\r\n' +
        'Content-Disposition: attachment; filename="smime.p7s"\r\n' +
        'Content-Description: S/MIME Cryptographic Signature\r\n' +
        '\r\n',
    ),
    base64Lines(cms),
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]
  for (const piece of closing) body?.update(piece)
  body?.end()
  return {
    message: concatWithHeadroom([...outer, header, opening, ...entity, ...closing], DKIM_HEADROOM),
    ...(bodyHash ? { dkimBodyHash: bodyHash.digest('base64') } : {}),
  }
}
