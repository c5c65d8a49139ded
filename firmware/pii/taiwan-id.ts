/**
 * Taiwan personal identifiers (M12: de-identification). Only numbers whose
 * check digit is valid count, so invoice numbers, phone numbers and the like
 * do not trip the rule; masked forms (A12****789) never match.
 */

/** Letter codes of the national ID scheme (內政部 身分證字號): A=10 … with I, O, W, X, Y, Z out of order. */
const LETTER: Record<string, number> = {
  A: 10,
  B: 11,
  C: 12,
  D: 13,
  E: 14,
  F: 15,
  G: 16,
  H: 17,
  I: 34,
  J: 18,
  K: 19,
  L: 20,
  M: 21,
  N: 22,
  O: 35,
  P: 23,
  Q: 24,
  R: 25,
  S: 26,
  T: 27,
  U: 28,
  V: 29,
  W: 32,
  X: 30,
  Y: 31,
  Z: 33,
}
const WEIGHTS = [1, 9, 8, 7, 6, 5, 4, 3, 2, 1, 1]

/**
 * National ID (A123456789) and the 2021+ resident certificate (A800000014):
 * a letter, then 1/2 (citizens) or 8/9 (residents), then 8 digits; or the
 * older resident certificate: two letters (second A–D), then 8 digits.
 */
export function isValidTaiwanId(id: string): boolean {
  const s = id.toUpperCase()
  let digits: number[]
  if (/^[A-Z][1289]\d{8}$/.test(s)) {
    digits = [...String(LETTER[s[0]!]!)].map(Number).concat([...s.slice(1)].map(Number))
  } else if (/^[A-Z][A-D]\d{8}$/.test(s)) {
    // Old resident certificate: the second letter counts as the last digit of its code.
    digits = [...String(LETTER[s[0]!]!)].map(Number).concat([LETTER[s[1]!]! % 10], [...s.slice(2)].map(Number))
  } else return false
  const sum = digits.reduce((acc, d, i) => acc + d * WEIGHTS[i]!, 0)
  return sum % 10 === 0
}

/** Candidates are 10-character tokens not glued to other letters or digits. */
const CANDIDATE = /(?<![A-Za-z0-9])[A-Za-z][A-Da-d1289]\d{8}(?![A-Za-z0-9])/g

/** Invisible characters a reader does not show: format characters (zero-width space and joiners, soft hyphen, bidi controls, BOM) and blank fillers. */
// Each listed on its own (U+034F is a combining mark, the others stand alone): no sequence is meant.
// eslint-disable-next-line no-misleading-character-class
const INVISIBLE = /[\p{Cf}\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0]/gu

/**
 * Text as a person reads it, for finding identifiers however they are
 * written: Unicode NFKC (full-width Ａ１２３ → A123, and other compatibility
 * forms), with invisible characters removed (A123\u200b456789 reads A123456789).
 */
export function readable(text: string): string {
  return text.normalize('NFKC').replace(INVISIBLE, '')
}

/** Every unmasked, checksum-valid Taiwan ID in `text`, read as a person reads it. */
export function findTaiwanIds(text: string): string[] {
  return (readable(text).match(CANDIDATE) ?? []).filter(isValidTaiwanId)
}

/** A masked form for logs: A12****789. */
export function maskId(id: string): string {
  return `${id.slice(0, 3)}****${id.slice(-3)}`
}

/** `text` as a person reads it (`readable`), with every checksum-valid Taiwan ID in it masked. */
export function maskTaiwanIds(text: string): string {
  return readable(text).replace(CANDIDATE, (id) => (isValidTaiwanId(id) ? maskId(id) : id))
}
