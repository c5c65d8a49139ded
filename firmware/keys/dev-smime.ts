import { generateKeyPairSync, type X509Certificate } from 'node:crypto'
import { join } from 'node:path'
import * as der from '../../hal/crypto/der.ts'
import { caExtensions, makeCertificate, smimeExtensions } from '../../hal/crypto/issue.ts'
import type { Hsm } from '../../hal/hsm/index.ts'
import { writeFileAtomic } from '../../hal/storage/files.ts'
import { boxError } from '../box-errors.ts'
import { DEV_SMIME_LABEL } from './labels.ts'

export const DEV_CA_NAME = 'Statement Gateway development CA — not for production'
/** Where the development CA's certificate is kept, for verifiers (`openssl cms -verify -CAfile`). */
export const devCaFile = (dataDir: string) => join(dataDir, 'signing', 'dev-ca.pem')

/**
 * Gives a development box a working S/MIME signature from its first start, so
 * a newcomer sees the box's headline — both signatures — at once: an RSA-2048
 * key generated in the HSM (non-extractable, like the firm's), and a
 * certificate for `address` issued by a development CA made for this box
 * alone. The CA's key lives in memory for this call and is then dropped, so
 * nothing else can ever be issued under it; its certificate is written to
 * `<dataDir>/signing/dev-ca.pem` for verifiers. The CA's name says what it is.
 *
 * Never for an appliance: the firm's certificate comes from its CA (TWCA) via
 * `npm run hsm -- csr` / `import-cert` / `import-p12`. Idempotent: a key that
 * already has its certificate is left as it is.
 */
export async function ensureDevSmime(
  hsm: Hsm,
  opts: { dataDir: string; address: string; now?: Date },
): Promise<{ created: boolean; caFile: string; certificate: X509Certificate }> {
  if (!hsm.embedded) throw boxError('ESTART_REFUSED', 'a development S/MIME certificate is only made on the embedded SoftHSM token, never on a vendor HSM')
  const caFile = devCaFile(opts.dataDir)
  const existing = await hsm.certs.chain(DEV_SMIME_LABEL).catch(() => [])
  if (existing[0]) return { created: false, caFile, certificate: existing[0] }

  const { publicKey } = await hsm.keys.ensureKeyPair(DEV_SMIME_LABEL, 'rsa-2048')
  const now = opts.now ?? new Date()
  const notBefore = new Date(now.getTime() - 5 * 60_000)
  const ca = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const caCert = makeCertificate({
    subject: [
      [der.OID.commonName, DEV_CA_NAME],
      [der.OID.organizationName, 'Statement Gateway (development)'],
    ],
    publicKey: ca.publicKey,
    signingKey: ca.privateKey,
    notBefore,
    notAfter: new Date(now.getTime() + 10 * 365 * 86_400_000),
    extensions: caExtensions(),
  })
  const leaf = makeCertificate({
    subject: [
      [der.OID.commonName, `${opts.address} (development)`],
      [der.OID.organizationName, 'Statement Gateway (development)'],
      [der.OID.emailAddress, opts.address],
    ],
    publicKey,
    issuer: caCert,
    signingKey: ca.privateKey,
    notBefore,
    notAfter: new Date(now.getTime() + 2 * 365 * 86_400_000),
    extensions: smimeExtensions([opts.address]),
  })
  writeFileAtomic(caFile, caCert.toString(), 0o644)
  await hsm.certs.importCertificate(DEV_SMIME_LABEL, leaf, [caCert])
  return { created: true, caFile, certificate: leaf }
}
