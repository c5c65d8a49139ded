import { randomBytes } from 'node:crypto'
import { base64Lines } from '../mime/encode.ts'
import { concatWithHeadroom } from './headroom.ts'
import { splitForSigning } from './canonical.ts'
import { signedData, type CmsSigner } from './cms.ts'

const MICALG = 'sha-256'
/** Room kept in front of the signed message for the DKIM-Signature fields (two of them, about 1 KB together). */
const DKIM_HEADROOM = 4096

/**
 * S/MIME signing (M5; RFC 8551 §3.5.3, RFC 1847): the message becomes
 * multipart/signed with the original body entity, made 7-bit safe, as its
 * first part and a detached CMS SignedData as application/pkcs7-signature.
 * The message's own header fields (From, To, Subject, Date, Message-ID…) stay
 * outside and are kept byte for byte.
 */
export async function smimeSign(message: Buffer, signer: CmsSigner, signingTime: Date): Promise<Buffer> {
  const { outer, entity } = splitForSigning(message)
  const cms = await signedData(entity, signer, signingTime)
  const boundary = `----=_sg_${randomBytes(12).toString('hex')}`
  return concatWithHeadroom(
    [
      ...outer,
      Buffer.from(
        'MIME-Version: 1.0\r\n' +
          `Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=${MICALG};\r\n boundary="${boundary}"\r\n` +
          '\r\n' +
          'This is an S/MIME signed message\r\n' +
          '\r\n' +
          `--${boundary}\r\n`,
      ),
      ...entity,
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
    ],
    DKIM_HEADROOM,
  )
}
