import { maskAddress } from '../log.ts'
import { maskTaiwanIds } from './taiwan-id.ts'

/** An e-mail address in running text (as a receiver's reply quotes one). */
export const ADDRESS = /[^\s<>"'(),;:]+@[^\s<>"'(),;:]+/g
/** Runs of eight or more digits, of any script: account, card and telephone numbers (a time or a status code is shorter). */
const LONG_DIGITS = /\p{Nd}{8,}/gu
/** Control characters, which a text shown to people or put in a header field never needs. */
const CONTROL = /[\u0000-\u001f\u007f]+/g

/** Longest text from outside the box that it keeps: a receiver's words, a bounce's diagnostic. */
export const OUTSIDE_TEXT_LIMIT = 200

/**
 * Text that came from outside the box and that the box keeps or passes on — a
 * receiver's reply, a bounce's diagnostic (#30, S6, M10): anyone who knows a
 * return-path address can write it, so it is stored only as a person could
 * read it without learning whom it is about. Read as a person reads it (NFKC,
 * invisible characters gone); e-mail addresses masked (w****g@example.net);
 * national IDs masked, however they are written (A12****789); runs of eight or
 * more digits masked but for their ends (09******78); control characters
 * made spaces; at most `limit` characters.
 */
export function redactText(text: string, limit = OUTSIDE_TEXT_LIMIT): string {
  const masked = maskTaiwanIds(text)
    .replace(CONTROL, ' ')
    .replace(ADDRESS, maskAddress)
    .replace(LONG_DIGITS, (run) => {
      const d = [...run]
      return `${d.slice(0, 2).join('')}${'*'.repeat(d.length - 4)}${d.slice(-2).join('')}`
    })
  const chars = [...masked]
  return chars.length <= limit ? masked : `${chars.slice(0, limit - 1).join('')}…`
}

/** Text the box wrote itself but that may quote an address or an ID (a reason): those masked, nothing else changed. */
export function maskPersonalData(text: string): string {
  return maskTaiwanIds(text).replace(ADDRESS, maskAddress)
}
