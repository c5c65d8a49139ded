import { constants } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { SecureContextOptions, TlsOptions } from 'node:tls'
import { makeSelfSignedServerCert } from '../../hal/crypto/selfsigned.ts'
import { writeFileAtomic } from '../../hal/storage/files.ts'
import type { Config } from '../config/load.ts'
import type { Logger } from '../log.ts'
import { boxError } from '../box-errors.ts'

/**
 * S1: TLS 1.2 or higher, ECDHE key exchange, AES-128+ and SHA-256+. For TLS 1.2
 * only ECDHE suites with AEAD ciphers are offered: no static RSA key exchange,
 * no anonymous suites, no CBC/SHA-1. TLS 1.3 suites all qualify. Key exchange
 * groups are elliptic curves only (no finite-field DHE).
 */
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':')

export const ECDH_CURVES = 'X25519:P-256:P-384'

export interface TlsMaterial {
  cert: string
  key: string
  /** Where the material came from, for the start-up log. */
  source: string
}

/**
 * The submission listeners' certificate: the configured files, or on first
 * start a key and self-signed certificate the box makes in `<dataDir>/tls/`
 * (mode 0600), reused on later starts.
 */
export function loadTlsMaterial(config: Config, log: Logger): TlsMaterial {
  const { certFile, keyFile } = config.submission.tls
  if (certFile || keyFile) {
    if (!certFile || !keyFile) throw boxError('ESTART_REFUSED', 'submission.tls.certFile and submission.tls.keyFile must be set together')
    return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), source: certFile }
  }
  const dir = join(config.dataDir, 'tls')
  const certPath = join(dir, 'submission.crt')
  const keyPath = join(dir, 'submission.key')
  if (!existsSync(certPath) || !existsSync(keyPath)) {
    const made = makeSelfSignedServerCert({ hostname: config.submission.hostname, addresses: [config.submission.host] })
    writeFileAtomic(keyPath, made.keyPem, 0o600)
    writeFileAtomic(certPath, made.certPem, 0o600)
    log.info({ certPath, fingerprint256: made.certificate.fingerprint256 }, 'created a self-signed submission TLS certificate')
  }
  return { cert: readFileSync(certPath, 'utf8'), key: readFileSync(keyPath, 'utf8'), source: certPath }
}

export function serverTlsOptions(material: TlsMaterial, minVersion: 'TLSv1.2' | 'TLSv1.3'): TlsOptions & SecureContextOptions {
  return {
    cert: material.cert,
    key: material.key,
    minVersion,
    ciphers: TLS12_CIPHERS,
    ecdhCurve: ECDH_CURVES,
    honorCipherOrder: true,
    // No renegotiation, asked for by the client or not (TLS 1.2; TLS 1.3 has none): a
    // client-initiated renegotiation costs the server a full handshake each time.
    secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
  }
}
