import { readFileSync } from 'node:fs'
import { X509Certificate } from 'node:crypto'
import type { Clock } from '../../../hal/clock.ts'
import { certificateParts, keyUsage } from '../../../hal/crypto/der-read.ts'
import { HsmError, type Hsm, type SignAlgorithm } from '../../../hal/hsm/index.ts'
import type { Component } from '../../component.ts'
import type { Config } from '../../config/load.ts'
import { GatewayError } from '../../errors.ts'
import type { EventSink } from '../../events.ts'
import type { Logger } from '../../log.ts'
import { dkimKeyLabel } from '../../keys/labels.ts'
import { domainOf } from '../../mime/address.ts'
import { toCrlf } from '../../mime/encode.ts'
import { field } from '../../mime/header.ts'
import { factsFor } from '../edited.ts'
import type { Submitted } from '../handoff.ts'
import type { Stage } from '../stage.ts'
import { dkimSign, messageBodyHash, sha256, type HashFactory } from '../../signing/dkim.ts'
import { smimeEncrypt } from '../../signing/encrypt.ts'
import { sevenBitMessage } from '../../signing/canonical.ts'
import { smimeSign } from '../../signing/smime.ts'

const EMAIL_PROTECTION = '1.3.6.1.5.5.7.3.4'
const ANY_EKU = '2.5.29.37.0'
/** Certificates are read from the token at most this often (and again after it reconnects). */
const CERT_CACHE_MS = 60_000

type DomainConfig = Config['signing']['domains'][number]
type SignedWith = { serial: string; issuer: string; algorithm: string }

/**
 * Checks that a certificate may sign mail from `address` at `now` (M5):
 * within validity, naming the address (or, for a domain certificate, the
 * domain), with digitalSignature or nonRepudiation and emailProtection.
 */
export function certificateProblem(cert: X509Certificate, address: string, now: Date): GatewayError | undefined {
  if (now < cert.validFromDate || now > cert.validToDate) {
    return new GatewayError(
      'ESIGN_CERT_EXPIRED',
      `the signing certificate for ${address} is valid ${cert.validFromDate.toISOString()} to ${cert.validToDate.toISOString()}`,
    )
  }
  const domain = domainOf(address)
  const san = cert.subjectAltName ?? ''
  const named =
    cert.checkEmail(address, { subject: 'default' }) !== undefined ||
    san.split(', ').some((e) => e.toLowerCase() === `dns:${domain}` || e.toLowerCase() === `email:@${domain}` || e.toLowerCase() === `email:${domain}`)
  if (!named) return new GatewayError('ESIGN_CERT_MISMATCH', `the signing certificate (${cert.subject.replace(/\n/g, ', ')}) does not name ${address}`)
  const ku = keyUsage(certificateParts(cert.raw))
  if (ku && !ku.has('digitalSignature') && !ku.has('nonRepudiation')) return new GatewayError('ESIGN_CERT_USAGE')
  const eku = cert.keyUsage
  if (eku && !eku.includes(EMAIL_PROTECTION) && !eku.includes(ANY_EKU)) return new GatewayError('ESIGN_CERT_USAGE')
  return undefined
}

/**
 * The signing stage (M4, M5, M6): S/MIME with the firm's certificate, then,
 * when configured, encryption to the recipient, then DKIM over the final
 * bytes. Both signatures are made in the HSM. A sender domain that requires
 * signing never gets an unsigned mail out: no usable certificate is a 5xx with
 * the reason, an unavailable HSM a 4xx.
 */
export class SigningStage implements Stage, Component {
  readonly name = 'submission:signing'
  readonly #config: Config
  readonly #log: Logger
  readonly #hsm: Hsm
  readonly #clock: Clock
  readonly #events: EventSink
  readonly #certs = new Map<string, { chain: X509Certificate[]; at: number; generation: number }>()
  readonly #encryptTo = new Map<string, X509Certificate>()
  readonly #hash: HashFactory

  /** `hash` makes the SHA-256 hashes over message bytes; a test passes one that counts (#35 3.1). */
  constructor(deps: { config: Config; log: Logger; hsm: Hsm; clock: Clock; events: EventSink; hash?: HashFactory }) {
    this.#config = deps.config
    this.#hash = deps.hash ?? sha256
    this.#events = deps.events
    this.#log = deps.log.child({ component: 'signing' })
    this.#hsm = deps.hsm
    this.#clock = deps.clock
  }

  async start(): Promise<void> {
    for (const r of this.#config.signing.encryptTo) this.#encryptTo.set(r.address.toLowerCase(), new X509Certificate(readFileSync(r.certFile)))
    for (const d of this.#config.signing.domains) {
      try {
        for (const [selector, type] of [
          [d.dkimSelector, 'rsa-2048'],
          [d.dkimEd25519Selector, 'ed25519'],
        ] as const) {
          if (!selector) continue
          const { created } = await this.#hsm.keys.ensureKeyPair(dkimKeyLabel(d.domain, selector), type)
          if (created) this.#log.info({ domain: d.domain, selector, type }, 'generated a DKIM key in the HSM; publish its record (npm run dkim -- dns)')
        }
        if (d.smimeKey) {
          const [leaf] = await this.#chain(d.smimeKey)
          this.#log.info(
            { domain: d.domain, subject: leaf!.subject.replace(/\n/g, ', '), notAfter: leaf!.validToDate.toISOString() },
            'S/MIME certificate ready',
          )
        }
      } catch (err) {
        if (!(err instanceof HsmError)) throw err
        // Not fatal: submissions for this domain get the precise reason until it is fixed.
        this.#log.error({ domain: d.domain, code: err.code, err: err.message }, 'signing for this domain is not ready')
      }
    }
  }

  async stop(): Promise<void> {}

  async process(mail: Submitted): Promise<Submitted> {
    // The structure and From as read once at submission; a caller without them (a test, a
    // tool) gets the same reading here.
    const original = toCrlf(mail.message)
    const facts = factsFor({ ...mail, message: original })
    const from = facts.from
    if (!from) throw new GatewayError('EMESSAGE_NO_FROM')
    const domain = domainOf(from)
    const dc = this.#config.signing.domains.find((d) => d.domain === domain)
    const sender = this.#config.signing.senders.find((s) => s.address.toLowerCase() === from)
    const now = new Date(this.#clock.now())
    // Every leaf 7-bit safe and no line over 998 octets, with or without S/MIME: DKIM must survive relays too.
    let message = sevenBitMessage(original, facts.tree)

    const smimeKey = sender?.smimeKey ?? dc?.smimeKey
    let smime: SignedWith | undefined
    // The DKIM body hash comes out of the S/MIME pass over the entity (#35 3.1), and one serves both DKIM signatures.
    let bodyHash: string | undefined
    const dkimWanted = Boolean(dc?.dkimSelector || dc?.dkimEd25519Selector)
    if (smimeKey) ({ message, smime, bodyHash } = await this.#smime(message, smimeKey, from, dc, now, dkimWanted))
    const signedOnly = message
    message = this.#encrypt(message, mail.envelope.rcptTo)
    // Told before DKIM replaces the message (S6: the trail must say what happened).
    const encrypted = message !== signedOnly
    // Encryption made a new body: its hash is taken once here, for both signatures.
    const opts = { hash: this.#hash, bodyHash: encrypted ? undefined : bodyHash }
    if (dkimWanted) opts.bodyHash ??= messageBodyHash(message, this.#hash)
    const dkim: string[] = []
    if (dc?.dkimSelector) {
      dkim.push(`${dc.domain}/${dc.dkimSelector} rsa-sha256`)
      const label = dkimKeyLabel(dc.domain, dc.dkimSelector)
      message = await this.#hsmCall(() =>
        dkimSign(message, { domain: dc.domain, selector: dc.dkimSelector, sign: (d) => this.#hsm.keys.sign(label, 'rsa-pkcs1-sha256', d) }, now, opts),
      )
    }
    if (dc?.dkimEd25519Selector) {
      // An additional Ed25519 signature (RFC 8463): verifiers that know it use it, the others the RSA one.
      const label = dkimKeyLabel(dc.domain, dc.dkimEd25519Selector)
      const selector = dc.dkimEd25519Selector
      dkim.push(`${dc.domain}/${selector} ed25519-sha256`)
      message = await this.#hsmCall(() =>
        dkimSign(message, { domain: dc.domain, selector, algorithm: 'ed25519-sha256', sign: (d) => this.#hsm.keys.sign(label, 'ed25519', d) }, now, opts),
      )
    }
    // S2: which certificate and keys vouched for this statement, for the audit trail.
    const mid = /<([^<>\s]{1,250})>/.exec(field(facts.tree, 'message-id') ?? '')?.[1]
    this.#events.emit({ type: 'signing.signed', id: mail.envelope.id, smime, dkim, encrypted, ...(mid ? { messageId: mid } : {}) })
    return { envelope: mail.envelope, message }
  }

  async #smime(
    message: Buffer,
    label: string,
    from: string,
    dc: DomainConfig | undefined,
    now: Date,
    dkimBodyHash: boolean,
  ): Promise<{ message: Buffer; smime: SignedWith | undefined; bodyHash?: string }> {
    const required = dc?.smimeRequired ?? true
    let chain: X509Certificate[]
    try {
      chain = await this.#hsmCall(() => this.#chain(label))
    } catch (err) {
      if (err instanceof GatewayError && err.code === 'ESIGN_NO_CERT' && !required) {
        this.#log.warn({ label }, 'no S/MIME certificate; sending unsigned because signing is not required for this domain')
        return { message, smime: undefined }
      }
      throw err
    }
    const [leaf, ...rest] = chain
    const problem = certificateProblem(leaf!, from, now)
    if (problem) throw problem
    const algorithm: SignAlgorithm = dc?.smimeAlgorithm ?? (leaf!.publicKey.asymmetricKeyType === 'ec' ? 'ecdsa-p256-sha256' : 'rsa-pkcs1-sha256')
    const signed = await this.#hsmCall(() =>
      smimeSign(message, { certificate: leaf!, chain: rest, algorithm, sign: (d) => this.#hsm.keys.sign(label, algorithm, d) }, now, {
        dkimBodyHash,
        hash: this.#hash,
      }),
    )
    return {
      message: signed.message,
      bodyHash: signed.dkimBodyHash,
      smime: { serial: leaf!.serialNumber, issuer: leaf!.issuer.replace(/\n/g, ', '), algorithm },
    }
  }

  #encrypt(message: Buffer, rcptTo: readonly string[]): Buffer {
    if (this.#encryptTo.size === 0) return message
    const certs = rcptTo.map((r) => this.#encryptTo.get(r.toLowerCase()))
    if (certs.every((c) => c === undefined)) return message
    if (certs.some((c) => c === undefined)) throw new GatewayError('EENCRYPT_RECIPIENT_CERT')
    return smimeEncrypt(message, certs as X509Certificate[], this.#config.signing.encryptionCipher)
  }

  async #chain(label: string): Promise<X509Certificate[]> {
    const cached = this.#certs.get(label)
    const now = this.#clock.now()
    if (cached && now - cached.at < CERT_CACHE_MS && cached.generation === this.#hsm.token.generation) return cached.chain
    const chain = await this.#hsm.certs.chain(label)
    this.#certs.set(label, { chain, at: now, generation: this.#hsm.token.generation })
    return chain
  }

  /** HSM errors as SMTP answers: a missing key or certificate is ESIGN_NO_CERT, a throttling token EHSM_BUSY, anything else EHSM_UNAVAILABLE. */
  async #hsmCall<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      if (!(err instanceof HsmError)) throw err
      if (err.code === 'EHSM_KEY_NOT_FOUND') throw new GatewayError('ESIGN_NO_CERT', undefined, { cause: err })
      if (err.code === 'EHSM_BUSY') throw new GatewayError('EHSM_BUSY', undefined, { cause: err })
      throw new GatewayError('EHSM_UNAVAILABLE', undefined, { cause: err })
    }
  }
}
