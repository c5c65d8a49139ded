import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { base32 } from '../../hal/crypto/base32.ts'

/**
 * Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP), the second
 * factor every admin-page account must have (S4). Six digits, 30-second
 * steps, HMAC-SHA-1: what every authenticator app reads from an `otpauth://`
 * URI. A code is accepted one step either side of the box's clock, and never
 * twice: the step it matched is kept and a code of that step or an earlier one
 * is refused, so a code seen over someone's shoulder cannot be replayed.
 */
export type TotpAlgorithm = 'sha1' | 'sha256' | 'sha512'

export const STEP_SECONDS = 30
export const DIGITS = 6
/** Steps either side of the clock a code is accepted for (RFC 6238 5.2: network delay, clock drift). */
const WINDOW = 1
/** 160 bits: RFC 4226 4 R6 recommends it for HMAC-SHA-1. */
const SECRET_BYTES = 20

/** RFC 4226 5.3: the HOTP value of `counter`. */
export function hotp(secret: Buffer, counter: number, digits = DIGITS, algorithm: TotpAlgorithm = 'sha1'): string {
  const msg = Buffer.alloc(8)
  msg.writeBigUInt64BE(BigInt(counter))
  const mac = createHmac(algorithm, secret).update(msg).digest()
  const offset = mac[mac.length - 1]! & 0x0f
  const binary = mac.readUInt32BE(offset) & 0x7fffffff
  return String(binary % 10 ** digits).padStart(digits, '0')
}

/** RFC 6238 4.2: the step a time (ms since the epoch) falls in. */
export const stepAt = (nowMs: number): number => Math.floor(nowMs / 1000 / STEP_SECONDS)

export function totp(secret: Buffer, nowMs: number, digits = DIGITS, algorithm: TotpAlgorithm = 'sha1'): string {
  return hotp(secret, stepAt(nowMs), digits, algorithm)
}

/**
 * The step `code` is valid for at `nowMs`, if it is one later than
 * `lastUsedStep`; undefined otherwise. Every step of the window is computed
 * and compared in constant time, whichever matches.
 */
export function verifyTotp(secret: Buffer, code: string, nowMs: number, lastUsedStep = -1): number | undefined {
  const given = Buffer.from(code.replace(/\s/g, ''))
  if (given.length !== DIGITS) return undefined
  const now = stepAt(nowMs)
  let matched: number | undefined
  for (let step = now - WINDOW; step <= now + WINDOW; step++) {
    const ok = timingSafeEqual(Buffer.from(hotp(secret, step)), given)
    if (ok && step > lastUsedStep && matched === undefined) matched = step
  }
  return matched
}

export const newTotpSecret = (): Buffer => randomBytes(SECRET_BYTES)

/** The key URI authenticator apps read from a QR code (Google Authenticator's Key Uri Format). */
export function otpauthUri(secret: Buffer, account: string, issuer: string): string {
  const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(account)}`
  const params = new URLSearchParams({ secret: base32(secret).toUpperCase(), issuer, algorithm: 'SHA1', digits: String(DIGITS), period: String(STEP_SECONDS) })
  return `otpauth://totp/${label}?${params.toString().replaceAll('+', '%20')}`
}
