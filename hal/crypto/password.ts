import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto'

/**
 * Submission account passwords are stored only as scrypt hashes (M1, S3: salted
 * one-way function; never plaintext). Format, self-describing so parameters can
 * be raised later without breaking old hashes:
 *
 *   $scrypt$ln=15,r=8,p=1$<salt base64>$<hash base64>
 *
 * ln=15 (N=32768, 32 MiB) costs ~50–100 ms per check on the box's CPU, which
 * also slows online guessing; the failure limiter in auth.ts does the rest.
 */

const PREFIX = '$scrypt$'
const KEYLEN = 32
const FORMAT = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]{22,}={0,2})\$([A-Za-z0-9+/]{43}=?)$/

export interface HashParams {
  ln: number
  r: number
  p: number
}

export const DEFAULT_PARAMS: HashParams = { ln: 15, r: 8, p: 1 }

function derive(password: string, salt: Buffer, { ln, r, p }: HashParams): Promise<Buffer> {
  const N = 2 ** ln
  const options: ScryptOptions = { N, r, p, maxmem: 256 * N * r + 1024 * 1024 }
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFC'), salt, KEYLEN, options, (err, key) => (err ? reject(err) : resolve(key)))
  })
}

export async function hashPassword(password: string, params: HashParams = DEFAULT_PARAMS): Promise<string> {
  const salt = randomBytes(16)
  const key = await derive(password, salt, params)
  return `${PREFIX}ln=${params.ln},r=${params.r},p=${params.p}$${salt.toString('base64')}$${key.toString('base64')}`
}

/** Undefined when `hash` is a well-formed hash, a reason otherwise (config validation). */
export function passwordHashProblem(hash: string): string | undefined {
  const m = FORMAT.exec(hash)
  if (!m) return 'is not a password hash of the form $scrypt$ln=…,r=…,p=…$salt$hash (make one with `npm run account -- hash`)'
  const ln = Number(m[1])
  if (ln < 14 || ln > 22) return `scrypt cost ln=${ln} is outside 14…22`
  return undefined
}

export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  const m = FORMAT.exec(hash)
  if (!m) return false
  const params = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) }
  const expected = Buffer.from(m[5]!, 'base64')
  const actual = await derive(password, Buffer.from(m[4]!, 'base64'), params)
  return actual.length === expected.length && timingSafeEqual(actual, expected)
}
