/**
 * RFC 4648 base32 in lower case, without padding: the return-path tokens (a
 * local part some servers lower-case) and TOTP secrets (which authenticator
 * apps read in either case) are written in it.
 */
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567'

export function base32(buf: Buffer): string {
  let out = ''
  let bits = 0
  let value = 0
  for (const byte of buf) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31]
  return out
}

/**
 * The bytes of a lower-case base32 string, or undefined when it is not the
 * canonical spelling of any bytes: a character not of the alphabet, a length
 * no byte string encodes to (1, 3 or 6 characters past a multiple of 8), or
 * leftover bits of the last character that are not zero (#30: `…k57e4`,
 * `…k57e5` and `…k57e7` all decoded to the same token, so each token had 15
 * other spellings that opened). Every byte string has exactly one spelling.
 */
export function unbase32(s: string): Buffer | undefined {
  if ([1, 3, 6].includes(s.length % 8)) return undefined
  const out: number[] = []
  let bits = 0
  let value = 0
  for (const ch of s) {
    const v = ALPHABET.indexOf(ch)
    if (v < 0) return undefined
    value = ((value << 5) | v) & 0xffff
    bits += 5
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff)
      bits -= 8
    }
  }
  if (bits > 0 && (value & ((1 << bits) - 1)) !== 0) return undefined
  return Buffer.from(out)
}
