import { gluedAfter, gluedBefore, reading, type Reading } from './as-read.ts'

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

/** Where a candidate starts: a letter, then 1/2/8/9 or A–D, then 8 digits (its ends are judged on the text as shown). */
const CORE = /[A-Za-z](?=[A-Da-d1289]\d{8})/g
const EIGHT_DIGITS = /\d{8}/
/** A candidate in a text of its own: 10 characters not glued to other ASCII letters or digits. */
const CANDIDATE = /(?<![A-Za-z0-9])[A-Za-z][A-Da-d1289]\d{8}(?![A-Za-z0-9])/g

export interface FoundId {
  /** The ID in capital Latin letters and ASCII digits, as its checksum was computed. */
  id: string
  /** Where it is in the reading's `text` (what a person is shown): [from, to); absent when found only in the early reading. */
  at?: [number, number]
}

/** A candidate the checksum makes an ID; a lower-case l in front is also read as I (the two look alike; an ID's letter is a capital). */
const validAs = (token: string) => [token, ...(token[0] === 'l' ? [`I${token.slice(1)}`] : [])].find(isValidTaiwanId)?.toUpperCase()

/**
 * Every unmasked, checksum-valid Taiwan ID in a reading: searched in its Latin form, each one
 * a token on its own in the text as shown (`gluedBefore`, `gluedAfter`); then in the early
 * reading, where it is a token on its own there.
 */
export function idsInReading(r: Reading): FoundId[] {
  const out: FoundId[] = []
  // Every candidate has eight ASCII digits in a row (in `latin`, other scripts' digits are ASCII): one
  // quick pass finds whether there is any (#35: most text has none).
  if (!EIGHT_DIGITS.test(r.latin) && (r.early === undefined || !EIGHT_DIGITS.test(r.early))) return out
  for (const m of r.latin.matchAll(CORE)) {
    const from = r.origin(m.index)
    const to = r.origin(m.index + 10)
    if (gluedBefore(r.text, from) || gluedAfter(r.text, to)) continue
    const id = validAs(r.latin.slice(m.index, m.index + 10))
    if (id) out.push({ id, at: [from, to] })
  }
  if (r.early !== undefined) {
    const seen = new Set(out.map((f) => f.id))
    for (const m of r.early.matchAll(CANDIDATE)) {
      const id = validAs(m[0])
      if (id && !seen.has(id)) out.push({ id })
    }
  }
  return out
}

/**
 * Every unmasked, checksum-valid Taiwan ID in `text`, read as a person reads it
 * (firmware/pii/as-read.ts: NFKC, invisible characters gone, other scripts'
 * look-alike letters and digits read as Latin ones).
 */
export function findTaiwanIds(text: string): string[] {
  return [...new Set(idsInReading(reading(text)).map((f) => f.id))]
}

/** A masked form for logs: A12****789. */
export function maskId(id: string): string {
  return `${id.slice(0, 3)}****${id.slice(-3)}`
}

/**
 * `text` as a person reads it (`readable`), with every checksum-valid Taiwan ID in it masked,
 * those written with other scripts' letters or digits too (masked as their Latin reading:
 * А123456789 with a Cyrillic А is A12****789). The rest keeps its own script.
 */
export function maskTaiwanIds(text: string): string {
  const r = reading(text)
  const found = idsInReading(r)
  // Found only when read before NFKC: no place in the text as shown to mask, so the early reading is what is kept, masked.
  if (found.some((f) => !f.at))
    return r.early!.replace(CANDIDATE, (t) => {
      const id = validAs(t)
      return id ? maskId(id) : t
    })
  let out = ''
  let at = 0
  for (const f of found) {
    const [from, to] = f.at!
    if (from < at) continue // overlapping candidates: the first one is masked
    out += r.text.slice(at, from) + maskId(f.id)
    at = to
  }
  return out + r.text.slice(at)
}
