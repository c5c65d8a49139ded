import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { writeFileAtomic } from '../storage/files.ts'
import { HsmError, toHsmError } from './errors.ts'
import { cleanLabel, pkcs11 as P } from './pkcs11.ts'

/** Debian's SoftHSM2 module (package softhsm2). */
export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so'

export interface DevToken {
  module: string
  pinFile: string
  env: { SOFTHSM2_CONF: string }
  created: boolean
}

/**
 * The embedded-default HSM: a SoftHSM2 token under `<dir>` with its own
 * softhsm2.conf, a random user PIN and security-officer PIN in 0600 files.
 * The token is initialised through PKCS#11 (C_InitToken, C_InitPIN), so no PIN
 * ever appears on a command line. Idempotent: an existing token is reused.
 */
export function ensureDevToken(dir: string, label: string, module = SOFTHSM_MODULE): DevToken {
  if (Buffer.byteLength(label) > 32) throw new HsmError('EHSM_BAD_INPUT', `token label "${label}" is longer than 32 bytes`)
  const tokens = join(dir, 'tokens')
  const conf = join(dir, 'softhsm2.conf')
  const pinFile = join(dir, 'user.pin')
  const soPinFile = join(dir, 'so.pin')
  mkdirSync(tokens, { recursive: true, mode: 0o700 })
  if (!existsSync(conf)) {
    writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`, { mode: 0o600 })
  }
  const env = { SOFTHSM2_CONF: conf }
  if (!existsSync(module)) throw new HsmError('EHSM_UNAVAILABLE', `${module} is missing: install the softhsm2 package`)
  process.env.SOFTHSM2_CONF = conf

  const p = new P.PKCS11()
  p.load(module)
  try {
    p.C_Initialize({ flags: P.CKF_OS_LOCKING_OK })
    const present = p.C_GetSlotList(true).some((s) => cleanLabel(p.C_GetTokenInfo(s).label) === label)
    if (present) {
      if (!existsSync(pinFile)) throw new HsmError('EHSM_PIN_FILE', `token "${label}" exists in ${tokens} but ${pinFile} is missing`)
      return { module, pinFile, env, created: false }
    }
    // PINs reach the disk before the token exists: a crash in between leaves
    // files without a token (retried next time), never a token nobody can open.
    const userPin = randomBytes(24).toString('base64url')
    const soPin = randomBytes(24).toString('base64url')
    writeFileAtomic(pinFile, `${userPin}\n`, 0o600)
    writeFileAtomic(soPinFile, `${soPin}\n`, 0o600)
    const free = p.C_GetSlotList(true).find((s) => (p.C_GetTokenInfo(s).flags & P.CKF_TOKEN_INITIALIZED) === 0)
    if (!free) throw new HsmError('EHSM_TOKEN_NOT_FOUND', 'SoftHSM offers no free slot')
    // PKCS#11 labels are 32 bytes padded with blanks (pkcs11js would pad with NULs).
    p.C_InitToken(free, soPin, label.padEnd(32, ' '))
    const slot = p.C_GetSlotList(true).find((s) => cleanLabel(p.C_GetTokenInfo(s).label) === label)
    if (!slot) throw new HsmError('EHSM_TOKEN_NOT_FOUND', `token "${label}" not visible after initialisation`)
    const session = p.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
    p.C_Login(session, P.CKU_SO, soPin)
    p.C_InitPIN(session, userPin)
    p.C_Logout(session)
    p.C_CloseSession(session)
    return { module, pinFile, env, created: true }
  } catch (err) {
    throw toHsmError(err, 'create SoftHSM token')
  } finally {
    try {
      p.C_Finalize()
    } catch {
      // not initialised
    }
    p.close()
  }
}
