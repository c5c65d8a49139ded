import { spawn } from 'node:child_process'
import type { Writable } from 'node:stream'
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto'
import * as der from '../crypto/der.ts'
import { certificateParts } from '../crypto/der-read.ts'
import { KeyImport } from './import.ts'
import { HsmError } from './errors.ts'
import { findAll, type KeyStore } from './keys.ts'
import { pkcs11 as P, type Handle, type PKCS11 } from './pkcs11.ts'
import type { Token } from './token.ts'

/** S2: the smallest RSA modulus the box signs with (RSA-2048; EC keys are P-256, ECC-256). */
export const MIN_RSA_BITS = 2048

/** Chain certificates are stored under `<label>/chain/<n>`, leaf first, then upwards. */
export const chainLabel = (label: string, i: number) => `${label}/chain/${i}`
/** Certificates a chain is read to at most (leaf included): a loop in what the token holds ends here. */
const MAX_CHAIN = 10

/**
 * Certificates as token objects (M5, M6): the firm's signing certificate and
 * its chain sit next to the key they belong to, under the same label and
 * CKA_ID, as PKCS#11 applications expect.
 */
export class CertStore {
  readonly #token: Token
  readonly #keys: KeyStore

  constructor(token: Token, keys: KeyStore) {
    this.#token = token
    this.#keys = keys
  }

  /**
   * Imports a leaf certificate and its chain under `label`. The leaf must
   * belong to the private key with that label when one exists (so a wrong
   * certificate cannot be paired with the firm's key). Replaces certificates
   * previously stored under the label.
   */
  async importCertificate(label: string, leaf: X509Certificate, chain: readonly X509Certificate[] = []): Promise<void> {
    let id: Buffer | undefined
    if (await this.#keys.exists(label, 'private')) {
      const pub = await this.#keys.publicKey(label)
      if (!leaf.publicKey.equals(pub)) throw new HsmError('EHSM_BAD_INPUT', `the certificate's public key is not the key "${label}"`)
      id = await this.#token.run('C_GetAttributeValue', async (s, p) => {
        const h = await this.#keys.handle(label, 'private')
        return p.C_GetAttributeValue(s, h, [{ type: P.CKA_ID }])[0]!.value
      })
    }
    await this.#token.run('C_CreateObject', (s, p) => {
      for (const h of findAll(p, s, [
        { type: P.CKA_CLASS, value: P.CKO_CERTIFICATE },
        { type: P.CKA_LABEL, value: label },
      ]))
        p.C_DestroyObject(s, h)
      for (let i = 0; ; i++) {
        const old = findAll(p, s, [{ type: P.CKA_LABEL, value: chainLabel(label, i) }])
        if (old.length === 0) break
        for (const h of old) p.C_DestroyObject(s, h)
      }
      createCertificate(p, s, label, leaf, id)
      chain.forEach((c, i) => createCertificate(p, s, chainLabel(label, i), c, undefined, true))
    })
  }

  /**
   * The leaf certificate under `label`, then its chain. Lookups go through the
   * key store, so a certificate that vanishes with its token reads as the token
   * being away (temporary), not as a certificate that was never installed.
   */
  async chain(label: string): Promise<X509Certificate[]> {
    const out: X509Certificate[] = []
    for (let i = -1; out.length < MAX_CHAIN; i++) {
      const l = i < 0 ? label : chainLabel(label, i)
      if (i < 0 || (await this.#keys.exists(l, 'certificate'))) {
        out.push(new X509Certificate(await this.#keys.attribute(l, 'certificate', P.CKA_VALUE)))
        continue
      }
      // #38: a CA certificate the token already held under another key's chain (a token that keeps one object per
      // certificate, softokn) was not stored again: found by its subject, the last certificate's issuer.
      const last = out.at(-1)!
      if (last.checkIssued(last)) break
      const named = await this.#token.run('C_FindObjects', (s, p) =>
        findAll(p, s, [
          { type: P.CKA_CLASS, value: P.CKO_CERTIFICATE },
          { type: P.CKA_SUBJECT, value: certificateParts(last.raw).issuer.bytes },
        ]).map((h) => new X509Certificate(p.C_GetAttributeValue(s, h, [{ type: P.CKA_VALUE }])[0]!.value)),
      )
      // Named as the issuer and its signature on the last one verifies: a certificate that only shares the name is not taken.
      const issuer = named.find((c) => last.checkIssued(c) && last.verify(c.publicKey) && !out.some((o) => o.raw.equals(c.raw)))
      if (!issuer) break
      out.push(issuer)
    }
    return out
  }

  /**
   * Imports a PKCS#12 file (as CAs such as TWCA issue them: key, certificate,
   * chain). The private key is created in the token sensitive and
   * non-extractable; from then on it exists only there. Nothing of the .p12 is
   * written anywhere by the box.
   */
  async importPkcs12(label: string, p12: Buffer, passphrase: string): Promise<{ leaf: X509Certificate; chain: X509Certificate[] }> {
    if (await this.#keys.exists(label, 'private')) throw new HsmError('EHSM_KEY_EXISTS', label)
    const keyPem = await openssl(['pkcs12', '-nocerts', '-noenc'], p12, passphrase)
    const certsPem = await openssl(['pkcs12', '-nokeys'], p12, passphrase)
    const certs = splitPem(certsPem).map((pem) => new X509Certificate(pem))
    let key: KeyObject
    try {
      key = createPrivateKey(keyPem)
    } catch (err) {
      throw new HsmError('EHSM_BAD_INPUT', 'the PKCS#12 holds no readable private key', { cause: err })
    }
    // S2 (non-repudiation with RSA-2048 or ECC-256 and up): a weaker key is refused here, not first met at signing.
    const bits = key.asymmetricKeyDetails?.modulusLength
    if (key.asymmetricKeyType === 'rsa' && (bits ?? 0) < MIN_RSA_BITS)
      throw new HsmError('EHSM_BAD_INPUT', `the PKCS#12's RSA key has ${bits} bits; S2 asks for at least ${MIN_RSA_BITS}`)
    const leaf = certs.find((c) => c.checkPrivateKey(key))
    if (!leaf) throw new HsmError('EHSM_BAD_INPUT', 'no certificate in the PKCS#12 matches its private key')
    const chain = orderChain(
      leaf,
      certs.filter((c) => c !== leaf),
    )
    const id = Buffer.from(leaf.fingerprint256.replace(/:/g, '').slice(0, 32), 'hex')
    const templates = keyPairTemplates(label, id, key)
    // The private key goes in wrapped, never as plaintext attributes (import.ts; a module in FIPS mode refuses those).
    const pkcs8 = key.export({ type: 'pkcs8', format: 'der' })
    try {
      await this.#token.run('C_UnwrapKey', async (s, p, slot) => {
        const importer = new KeyImport(p, s, slot)
        try {
          await importer.privateKey(pkcs8, templates.priv)
        } finally {
          importer.close()
        }
        p.C_CreateObject(s, templates.pub)
      })
    } finally {
      pkcs8.fill(0)
    }
    try {
      await this.importCertificate(label, leaf, chain)
    } catch (err) {
      // Nothing half-imported stays behind: a key without its certificate would look installed and sign nothing.
      for (const l of [label, ...chain.map((_, i) => chainLabel(label, i))]) await this.#keys.destroy(l).catch(() => 0)
      throw err
    }
    return { leaf, chain }
  }

  /**
   * A PKCS#10 request (RFC 2986) for a key generated inside the token: the
   * usual path when the CA issues to a key that never left the HSM. The
   * request asks for the S/MIME profile: digitalSignature + nonRepudiation,
   * emailProtection, and the mail addresses as rfc822Name.
   */
  async createCsr(label: string, subject: string, emails: readonly string[] = []): Promise<string> {
    const publicKey = await this.#keys.publicKey(label)
    const rsa = publicKey.asymmetricKeyType === 'rsa'
    const extensions = der.sequence(
      der.sequence(der.oid(der.OID.keyUsage), der.boolean(true), der.octetString(der.bitString(Buffer.from([0xc0]), 6))),
      der.sequence(der.oid(der.OID.extKeyUsage), der.octetString(der.sequence(der.oid(der.OID.emailProtection)))),
      ...(emails.length
        ? [der.sequence(der.oid(der.OID.subjectAltName), der.octetString(der.sequence(...emails.map((e) => der.implicit(1, Buffer.from(e, 'ascii'))))))]
        : []),
    )
    const info = der.sequence(
      der.integer(0),
      der.name(der.parseName(subject)),
      publicKey.export({ type: 'spki', format: 'der' }),
      der.explicit(0, der.sequence(der.oid(der.OID.extensionRequest), der.setOf(extensions))),
    )
    const algorithm = rsa ? der.sequence(der.oid(der.OID.sha256WithRSAEncryption), der.nullValue()) : der.sequence(der.oid(der.OID.ecdsaWithSha256))
    const signature = await this.#keys.sign(label, rsa ? 'rsa-pkcs1-sha256' : 'ecdsa-p256-sha256', info)
    return der.toPem('CERTIFICATE REQUEST', der.sequence(info, algorithm, der.bitString(signature)))
  }
}

function createCertificate(p: PKCS11, s: Handle, label: string, cert: X509Certificate, id: Buffer | undefined, ca = false): void {
  const parts = certificateParts(cert.raw)
  try {
    createCertificateObject(p, s, label, cert, id, parts)
  } catch (err) {
    // #38: NSS softokn keeps one object per certificate (issuer and serial) and answers CKR_GENERAL_ERROR to a
    // second. A CA certificate it already holds (two keys under one intermediate) is used where it is: chain()
    // finds it by subject. A leaf held under another label is refused, saying which, rather than a transient
    // "unexpected failure" that would be retried.
    const twin = findAll(p, s, [
      { type: P.CKA_CLASS, value: P.CKO_CERTIFICATE },
      { type: P.CKA_VALUE, value: cert.raw },
    ])[0]
    if (twin === undefined) throw err
    if (ca) return
    const held = p.C_GetAttributeValue(s, twin, [{ type: P.CKA_LABEL }])[0]!.value.toString('utf8')
    throw new HsmError(
      'EHSM_KEY_EXISTS',
      `the token refused a second object for the certificate "${cert.subject.replace(/\n/g, ', ')}" ` +
        `(held as "${held}"): this token keeps one object per certificate`,
      { cause: err },
    )
  }
}

function createCertificateObject(
  p: PKCS11,
  s: Handle,
  label: string,
  cert: X509Certificate,
  id: Buffer | undefined,
  parts: ReturnType<typeof certificateParts>,
): void {
  p.C_CreateObject(s, [
    { type: P.CKA_CLASS, value: P.CKO_CERTIFICATE },
    { type: P.CKA_CERTIFICATE_TYPE, value: P.CKC_X_509 },
    { type: P.CKA_TOKEN, value: true },
    { type: P.CKA_PRIVATE, value: false },
    { type: P.CKA_LABEL, value: label },
    ...(id ? [{ type: P.CKA_ID, value: id }] : []),
    { type: P.CKA_SUBJECT, value: parts.subject.bytes },
    { type: P.CKA_ISSUER, value: parts.issuer.bytes },
    { type: P.CKA_SERIAL_NUMBER, value: parts.serial.bytes },
    { type: P.CKA_VALUE, value: cert.raw },
  ])
}

/**
 * Token object templates for an imported key pair: the private half sensitive and non-extractable (M6), unwrapped
 * into the token with its value (import.ts), the public half beside it under the same label and id.
 */
function keyPairTemplates(label: string, id: Buffer, key: KeyObject) {
  const j = key.export({ format: 'jwk' })
  const b = (v: string | undefined) => Buffer.from(v ?? '', 'base64url')
  const named = [
    { type: P.CKA_TOKEN, value: true },
    { type: P.CKA_LABEL, value: label },
    { type: P.CKA_ID, value: id },
  ]
  const priv = [
    ...named,
    { type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY },
    { type: P.CKA_PRIVATE, value: true },
    { type: P.CKA_SENSITIVE, value: true },
    { type: P.CKA_EXTRACTABLE, value: false },
    { type: P.CKA_SIGN, value: true },
  ]
  const pub = [...named, { type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY }, { type: P.CKA_PRIVATE, value: false }, { type: P.CKA_VERIFY, value: true }]
  if (key.asymmetricKeyType === 'rsa') {
    const type = { type: P.CKA_KEY_TYPE, value: P.CKK_RSA }
    return {
      priv: [...priv, type],
      pub: [...pub, type, { type: P.CKA_MODULUS, value: b(j.n) }, { type: P.CKA_PUBLIC_EXPONENT, value: b(j.e) }],
    }
  }
  if (key.asymmetricKeyType === 'ec' && j.crv === 'P-256') {
    const curve = [
      { type: P.CKA_KEY_TYPE, value: P.CKK_EC },
      { type: P.CKA_EC_PARAMS, value: der.oid('1.2.840.10045.3.1.7') },
    ]
    const point = der.octetString(Buffer.concat([Buffer.from([4]), b(j.x), b(j.y)]))
    // The private half takes its curve from the PKCS#8 it is unwrapped from: SoftHSM refuses CKA_EC_PARAMS in an
    // unwrap template (CKR_ATTRIBUTE_READ_ONLY).
    return { priv: [...priv, curve[0]!], pub: [...pub, ...curve, { type: P.CKA_EC_POINT, value: point }] }
  }
  throw new HsmError('EHSM_BAD_INPUT', `unsupported key type ${key.asymmetricKeyType} (RSA or EC P-256 expected)`)
}

/** Runs openssl with the passphrase on stdin; output stays in memory. Retries with -legacy for old RC2/3DES files. */
async function openssl(args: string[], input: Buffer, passphrase: string): Promise<string> {
  const once = (extra: string[]) =>
    new Promise<string>((resolve, reject) => {
      // The .p12 goes in on stdin and the passphrase on fd 3: neither touches the disk or a command line.
      const child = spawn('openssl', [...args, ...extra, '-passin', 'fd:3'], { stdio: ['pipe', 'pipe', 'pipe', 'pipe'] })
      let stdout = ''
      let stderr = ''
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
      child.on('error', (err) => reject(new HsmError('EHSM_BAD_INPUT', `cannot run openssl: ${err.message}`)))
      child.on('close', (code) => {
        if (code === 0) return resolve(stdout)
        const wrong = /mac verify failure|invalid password|mac verify error/i.test(stderr)
        reject(new HsmError('EHSM_BAD_INPUT', wrong ? 'wrong PKCS#12 passphrase' : stderr.trim().split('\n')[0]))
      })
      child.stdin.on('error', () => {})
      child.stdin.end(input)
      const fd3 = child.stdio[3] as Writable
      fd3.on('error', () => {})
      fd3.end(`${passphrase}\n`)
    })
  return once([]).catch(async (err: HsmError) => {
    if (/passphrase/.test(err.message)) throw err
    return once(['-legacy'])
  })
}

function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
}

/** Orders CA certificates from the leaf's issuer upwards. */
function orderChain(leaf: X509Certificate, rest: X509Certificate[]): X509Certificate[] {
  const out: X509Certificate[] = []
  let current = leaf
  const pool = [...rest]
  for (;;) {
    const i = pool.findIndex((c) => current.checkIssued(c) && c !== current)
    if (i < 0) break
    current = pool.splice(i, 1)[0]!
    out.push(current)
  }
  return [...out, ...pool]
}
