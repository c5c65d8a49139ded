/**
 * HTML as text, for finding what a person could read in a mail (M12). One
 * linear pass over the markup gives three readings, and the policy looks at
 * all of them:
 *
 * - `source`: the markup itself with character references decoded — comments,
 *   attribute values (alt, title, href) and hidden elements included; data in
 *   the mail is in the mail whether or not a browser shows it;
 * - `joined`: the rendered text with tags removed and nothing put in their
 *   place, so `A123<b></b>456789` reads as one word, as on screen;
 * - `spaced`: the rendered text with a space for each tag, so text in
 *   neighbouring cells is not glued into one word.
 *
 * Comments, <script> and <style> content are not rendered text. No regular
 * expression runs over the markup: an unclosed `<` or comment ends the scan.
 */
export interface HtmlText {
  source: string
  joined: string
  spaced: string
}

const NAMED: Record<string, string> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  nbsp: '\u00a0',
  shy: '\u00ad',
  zwsp: '\u200b',
  zwnj: '\u200c',
  zwj: '\u200d',
  ensp: '\u2002',
  emsp: '\u2003',
  thinsp: '\u2009',
  hyphen: '\u2010',
  dash: '\u2010',
  minus: '\u2212',
  ndash: '\u2013',
  mdash: '\u2014',
  period: '.',
  comma: ',',
  colon: ':',
  semi: ';',
  lowbar: '_',
  num: '#',
  sol: '/',
  bsol: '\\',
  lpar: '(',
  rpar: ')',
}

/** Decodes HTML character references: `&#65;`, `&#x41;`, and the common named ones (with or without `;`). */
export function decodeEntities(text: string): string {
  if (!text.includes('&')) return text
  const out: string[] = []
  let from = 0
  for (let i = text.indexOf('&'); i >= 0; i = text.indexOf('&', i + 1)) {
    let j = i + 1
    let decoded: string | undefined
    if (text[j] === '#') {
      j++
      const hexa = text[j] === 'x' || text[j] === 'X'
      if (hexa) j++
      const digitsStart = j
      while (j < text.length && j - digitsStart < 8 && (hexa ? /[0-9A-Fa-f]/ : /[0-9]/).test(text[j]!)) j++
      if (j > digitsStart) {
        const cp = parseInt(text.slice(digitsStart, j), hexa ? 16 : 10)
        decoded = cp > 0 && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff) ? String.fromCodePoint(cp) : '\ufffd'
      }
    } else {
      while (j < text.length && j - i <= 10 && /[A-Za-z]/.test(text[j]!)) j++
      decoded = NAMED[text.slice(i + 1, j).toLowerCase()]
    }
    if (decoded === undefined) continue
    if (text[j] === ';') j++
    out.push(text.slice(from, i), decoded)
    from = j
    i = j - 1
  }
  out.push(text.slice(from))
  return out.join('')
}

export function htmlText(html: string): HtmlText {
  const joined: string[] = []
  const spaced: string[] = []
  let pos = 0
  let skipUntil: string | undefined // inside <script> or <style>: up to its end tag
  const lower = html.toLowerCase()
  while (pos < html.length) {
    if (skipUntil) {
      const close = lower.indexOf(skipUntil, pos)
      if (close < 0) break
      pos = close
      skipUntil = undefined
      continue
    }
    const lt = html.indexOf('<', pos)
    const text = html.slice(pos, lt < 0 ? html.length : lt)
    joined.push(text)
    spaced.push(text)
    if (lt < 0) break
    if (html.startsWith('<!--', lt)) {
      const end = html.indexOf('-->', lt + 4)
      if (end < 0) break // an unclosed comment runs to the end, as in a browser
      pos = end + 3
      spaced.push(' ')
      continue
    }
    const gt = html.indexOf('>', lt + 1)
    if (gt < 0) {
      // An unclosed "<" is text in a browser when no tag name follows; either way, nothing after it is markup.
      const rest = html.slice(lt)
      joined.push(rest)
      spaced.push(rest)
      break
    }
    const name = tagName(lower, lt + 1, gt)
    if (name === 'script' || name === 'style') skipUntil = `</${name}`
    spaced.push(' ')
    pos = gt + 1
  }
  return { source: decodeEntities(html), joined: decodeEntities(joined.join('')), spaced: decodeEntities(spaced.join('')) }
}

function tagName(lower: string, from: number, to: number): string {
  let end = from
  while (end < to && ((lower[end]! >= 'a' && lower[end]! <= 'z') || (lower[end]! >= '0' && lower[end]! <= '9'))) end++
  return lower.slice(from, end)
}
