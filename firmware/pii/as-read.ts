import { readFileSync } from 'node:fs'

/**
 * Text as a person reads it (M12, #32), for finding what must not leave the box
 * unmasked however it is written. Three steps, each a lookup per code point, so
 * the whole is linear in the text:
 *
 * 1. Unicode NFKC: full-width Ａ１２３ → A123, mathematical 𝐀 → A, and the other
 *    compatibility forms;
 * 2. invisible characters dropped: format characters (zero-width space and
 *    joiners, soft hyphen, bidi controls, BOM) and blank fillers;
 * 3. other scripts read as Latin: a letter Unicode's confusables data (UTS #39)
 *    says a reader takes for a Latin letter becomes that letter (Cyrillic А,
 *    Greek Α → A), and a decimal digit of any script (general category Nd) its
 *    ASCII digit (Arabic-Indic ١ → 1, Devanagari ४ → 4).
 *
 * Step 3 reads Cyrillic and Greek prose as Latin-looking letters, so what is
 * searched is every reading (`reading`): after step 2 (`readable`), after
 * step 3, and step 3 before step 1 where that differs.
 */

/** Invisible characters a reader does not show. */
// Each listed on its own (U+034F is a combining mark, the others stand alone): no sequence is meant.
// eslint-disable-next-line no-misleading-character-class
const INVISIBLE = /[\p{Cf}\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0]/gu

/**
 * #35: a text of ASCII only reads as itself — NFKC leaves ASCII alone, and no invisible
 * character, other script or non-ASCII digit is ASCII — so its reading is the text: no copy
 * and no walk per character (a statement's megabyte of ASCII cost each policy worker
 * about 30 ms in those steps).
 */
const NON_ASCII = /[^\x00-\x7f]/
export const isAsciiText = (text: string): boolean => !NON_ASCII.test(text)

/** Steps 1 and 2: NFKC, invisible characters removed (A123\u200b456789 reads A123456789). */
export function readable(text: string): string {
  if (isAsciiText(text)) return text
  return text.normalize('NFKC').replace(INVISIBLE, '')
}

interface ConfusablesFile {
  source: { standard: string; unicode: string; icu: string; debianPackage: string; via: string }
  /** Latin letter → every character read as it. */
  letters: Record<string, string>
}

/** The confusables table (generated from the ICU Debian ships: provisioning/unicode/latin-confusables.py). */
const DATA = JSON.parse(readFileSync(new URL('./latin-confusables.json', import.meta.url), 'utf8')) as ConfusablesFile

/** Where the letter data comes from, for the README and the status page. */
export const CONFUSABLES_SOURCE = DATA.source

const LATIN = new Map<string, string>()
for (const [letter, chars] of Object.entries(DATA.letters)) for (const ch of chars) LATIN.set(ch, letter)

const ND = /^\p{Nd}$/u
const isDigit = (cp: number) => cp >= 0 && ND.test(String.fromCodePoint(cp))

const DIGITS = new Map<number, string>()
/**
 * A decimal digit's value. Unicode encodes the decimal digits of every script
 * in contiguous runs from 0 to 9 (a stability policy), some runs back to back
 * (the mathematical digits: five runs of ten): the value is the distance from
 * the run's start, modulo 10. Taken from the runtime's own Unicode data.
 */
function digitValue(cp: number): string {
  let v = DIGITS.get(cp)
  if (v === undefined) {
    let start = cp
    while (isDigit(start - 1) && cp - start < 100) start--
    v = String((cp - start) % 10)
    DIGITS.set(cp, v)
  }
  return v
}

/**
 * What step 3 makes of each character it changes, looked up by code point: a
 * table for the Basic Multilingual Plane (the table's letters, and every
 * decimal digit but ASCII's), a map for the rest, filled as characters are met.
 */
const BMP: (string | undefined)[] = new Array<string | undefined>(0x10000)
for (const [ch, letter] of LATIN) if (ch.length === 1) BMP[ch.charCodeAt(0)] = letter
for (let c = 0x80; c < 0x10000; c++) if ((c < 0xd800 || c > 0xdfff) && ND.test(String.fromCharCode(c))) BMP[c] = digitValue(c)
const ASTRAL = new Map<number, string | null>()
function astral(cp: number): string | null {
  let v = ASTRAL.get(cp)
  if (v === undefined) {
    v = LATIN.get(String.fromCodePoint(cp)) ?? (isDigit(cp) ? digitValue(cp) : null)
    ASTRAL.set(cp, v)
  }
  return v
}

/**
 * Walks `text` calling `folded(at, width, to)` for each character step 3 changes (`width`:
 * 1 or 2 UTF-16 units). A typed lookup per code unit: no regular expression over a class of
 * a thousand characters (16 ns a character against 2).
 */
function eachFoldable(text: string, folded: (at: number, width: number, to: string) => void): void {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x80) continue
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const to = astral(text.codePointAt(i)!)
      if (to !== null) folded(i, 2, to)
      i++
    } else {
      const to = BMP[c]
      if (to !== undefined) folded(i, 1, to)
    }
  }
}

/** Step 3 on a text: other scripts' look-alike letters and digits as their Latin and ASCII ones. */
export function asLatin(text: string): string {
  let out = ''
  let last = 0
  eachFoldable(text, (at, width, to) => {
    out += text.slice(last, at) + to
    last = at + width
  })
  return last === 0 && out === '' ? text : out + text.slice(last)
}

/** The characters NFKC turns into something step 3 reads otherwise (ſ: f as written, s after NFKC). */
const EARLY = new Set<string>()
for (const ch of LATIN.keys()) if (asLatin(readable(ch)) !== LATIN.get(ch)) EARLY.add(ch)
const hasEarly = (raw: string) => {
  let found = false
  eachFoldable(raw, (at, width) => {
    found ||= EARLY.has(raw.slice(at, at + width))
  })
  return found
}

/**
 * A text as a person reads it: `text` after steps 1 and 2 (what is shown and
 * masked), `latin` after step 3 too (what is searched), and where each of
 * `latin`'s UTF-16 units came from in `text` (`origin`). `early`, when it
 * differs: step 3 done before step 1, for the few characters NFKC turns into
 * another letter than the one they look like (ſ, long s, looks like f and NFKC
 * makes it s; ϲ, lunate sigma, looks like c and NFKC makes it ς).
 */
export interface Reading {
  text: string
  latin: string
  /** The index in `text` of `latin[i]` (and `text.length` for `latin.length`). */
  origin(i: number): number
  early?: string
}

/**
 * Reads `raw` as a person does. Folding changes a character into one ASCII
 * one, so `latin` is as long as `text` but where an astral character (two
 * UTF-16 units) was folded: only those positions are kept, to map back.
 */
export function reading(raw: string): Reading {
  if (isAsciiText(raw)) return { text: raw, latin: raw, origin: (i) => i }
  const text = readable(raw)
  const r = latinOf(text)
  if (!hasEarly(raw)) return r
  const early = readable(asLatin(raw))
  return early === r.latin ? r : { ...r, early }
}

function latinOf(text: string): Reading {
  const shifts: number[] = [] // positions in `latin` of folded astral characters
  let latin = ''
  let last = 0
  eachFoldable(text, (at, width, to) => {
    latin += text.slice(last, at)
    if (width === 2) shifts.push(latin.length)
    latin += to
    last = at + width
  })
  if (last === 0 && latin === '') return { text, latin: text, origin: (i) => i }
  latin += text.slice(last)
  return {
    text,
    latin,
    origin: (i) => {
      // i plus the folded astral characters before it (each was one unit longer in `text`).
      let lo = 0
      let hi = shifts.length
      while (lo < hi) {
        const mid = (lo + hi) >> 1
        if (shifts[mid]! < i) lo = mid + 1
        else hi = mid
      }
      return i + lo
    },
  }
}

/** ASCII letters and digits, and the digits of every script: a token glued to one is part of a longer one. */
const GLUE = /^[A-Za-z0-9]$|^\p{Nd}$/u
/** Letters of scripts written with spaces between words (not Han, kana, Thai, Lao, Khmer, Myanmar, Tibetan, Bopomofo). */
const SPACED_LETTER = /^(?![\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}\p{sc=Bopomofo}\p{sc=Thai}\p{sc=Lao}\p{sc=Khmer}\p{sc=Myanmar}\p{sc=Tibetan}])\p{L}$/u

const charBefore = (text: string, at: number): string => {
  const low = text.charCodeAt(at - 1)
  return low >= 0xdc00 && low <= 0xdfff && at >= 2 ? String.fromCodePoint(text.codePointAt(at - 2)!) : text[at - 1]!
}

/**
 * Is a token that starts at `from` in `text` (as shown) glued to what precedes it? To an
 * ASCII letter or a digit of any script, always; and when the token's own first character
 * is another script's look-alike letter, to any letter of a script written with spaces: a
 * Cyrillic а at the end of "клиента" is that word's letter, not an ID's. An ID right after
 * a Chinese word, or a Latin-lettered one right after a Cyrillic word, stands on its own.
 */
export function gluedBefore(text: string, from: number): boolean {
  if (from <= 0) return false
  const before = charBefore(text, from)
  if (GLUE.test(before)) return true
  return text.charCodeAt(from) > 0x7f && SPACED_LETTER.test(before)
}

/** Is a token that ends at `to` in `text` glued to what follows: an ASCII letter or a digit of any script? */
export function gluedAfter(text: string, to: number): boolean {
  return to < text.length && GLUE.test(String.fromCodePoint(text.codePointAt(to)!))
}
