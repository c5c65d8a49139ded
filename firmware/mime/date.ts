/** An RFC 5322 §3.3 date-time in UTC with a numeric zone: `Sun, 22 Nov 2026 08:10:00 +0000`. */
export function rfc5322Date(ms: number): string {
  // toUTCString gives `Sun, 22 Nov 2026 08:10:00 GMT`; "GMT" is the obsolete zone form.
  return new Date(ms).toUTCString().replace(/GMT$/, '+0000')
}
