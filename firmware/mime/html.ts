import { createRequire } from 'node:module'
import type * as Entities from 'entities/decode'
import type * as Htmlparser2 from 'htmlparser2'
import type { TokenizerCallbacks } from 'htmlparser2'

/**
 * HTML as text, for finding what a person could read in a mail (M12). One
 * tokenizer (htmlparser2's, the one cheerio reads with) gives three readings,
 * and the policy looks at all of them:
 *
 * - `source`: the markup itself with character references decoded — comments,
 *   attribute values (alt, title, href) and hidden elements included; data in
 *   the mail is in the mail whether or not a browser shows it;
 * - `joined`: the rendered text with tags removed and nothing put in their
 *   place, so `A123<b></b>456789` reads as one word, as on screen;
 * - `spaced`: the rendered text with a space for each tag, so text in
 *   neighbouring cells is not glued into one word.
 *
 * Comments, <script> and <style> content are not rendered text. References are
 * decoded by the `entities` package with the whole WHATWG table (#34: it
 * replaced a table of 30 names). The tokenizer is one linear pass, no regular
 * expression runs over the markup, and an unclosed comment ends the text.
 */
export interface HtmlText {
  source: string
  joined: string
  spaced: string
}

/** What a reading of the markup is told: every callback the tokenizer has, each defaulting to nothing. */
export type HtmlEvents = Partial<TokenizerCallbacks>

const NOTHING = () => {}

const require = createRequire(import.meta.url)
let libraries: { htmlparser2: typeof Htmlparser2; entities: typeof Entities } | undefined
/**
 * htmlparser2 and the entities table, loaded at the first HTML read: together about 11 MB of
 * each V8 isolate, which the tools and threads that never read HTML (the ledger's export, the
 * token threads) need not carry.
 */
function lib(): NonNullable<typeof libraries> {
  return (libraries ??= { htmlparser2: require('htmlparser2') as typeof Htmlparser2, entities: require('entities/decode') as typeof Entities })
}

/** Character references decoded as in text (WHATWG, the whole table). */
export const decodeHtmlText = (text: string): string => lib().entities.decodeHTML(text)
/** Character references decoded as in an attribute value (a legacy name before "=" or a letter stays). */
export const decodeHtmlAttribute = (text: string): string => lib().entities.decodeHTMLAttribute(text)

/** Runs htmlparser2's tokenizer over `html` (references left as written: positions are the markup's own). */
export function tokenizeHtml(html: string, events: HtmlEvents): void {
  const cbs: TokenizerCallbacks = {
    onattribdata: NOTHING,
    onattribentity: NOTHING,
    onattribend: NOTHING,
    onattribname: NOTHING,
    oncdata: NOTHING,
    onclosetag: NOTHING,
    oncomment: NOTHING,
    ondeclaration: NOTHING,
    onend: NOTHING,
    onopentagend: NOTHING,
    onopentagname: NOTHING,
    onprocessinginstruction: NOTHING,
    onselfclosingtag: NOTHING,
    ontext: NOTHING,
    ontextentity: NOTHING,
    ...events,
  }
  const tokenizer = new (lib().htmlparser2.Tokenizer)({ decodeEntities: false }, cbs)
  // A "<" that cannot open a tag, a comment or a declaration (not followed by a letter, "/", "!" or
  // "?") is text wherever it stands, to the tokenizer as to a browser; handed over as a neutral
  // character of the same length, a run of them is one text piece instead of one callback each (a
  // megabyte of "<" was a million). Every index is the same, and readers slice the markup itself.
  tokenizer.write(maskStrayLessThan(html))
  tokenizer.end()
}

/** Whether a character code after "<" opens a tag, a comment or a declaration: a letter, "/", "!" or "?". */
const opensMarkup = (c: number): boolean => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2f || c === 0x21 || c === 0x3f

/**
 * `html` with every "<" that opens nothing turned into "x", in one pass over a copy of its code
 * units. (A global replace built the result from one part per match: eight million of them for
 * 8 MB of "<" made garbage collection most of the work, 9× the time for 4× the input.)
 */
function maskStrayLessThan(html: string): string {
  let units: Uint16Array | undefined
  for (let i = html.indexOf('<'); i !== -1; i = html.indexOf('<', i + 1)) {
    if (opensMarkup(html.charCodeAt(i + 1))) continue
    if (!units) {
      units = new Uint16Array(html.length)
      for (let j = 0; j < html.length; j++) units[j] = html.charCodeAt(j)
    }
    units[i] = 0x78
  }
  // A lone surrogate comes back as U+FFFD: one unit for one, so every index stays; readers slice `html`.
  return units ? UTF16.decode(units) : html
}
const UTF16 = new TextDecoder('utf-16le')

/** Whether the attribute value just ended was in quotes (`onattribend`'s first argument). */
export const quotedValue = (quote: Htmlparser2.QuoteType): boolean => {
  const { QuoteType } = lib().htmlparser2
  return quote === QuoteType.Double || quote === QuoteType.Single
}

/** Elements whose content a browser does not render as text. */
const HIDDEN = new Set(['script', 'style'])

export function htmlText(html: string): HtmlText {
  const joined: string[] = []
  const spaced: string[] = []
  let hidden = false
  let tag = ''
  // A run of text the tokenizer hands over in pieces ("<<<" is three) is decoded once, as one
  // text node: a megabyte of "<" is one slice, not a million.
  let from = -1
  let to = -1
  const flush = () => {
    if (from < 0) return
    const text = decodeHtmlText(html.slice(from, to))
    joined.push(text)
    spaced.push(text)
    from = to = -1
  }
  const markup = () => {
    flush()
    spaced.push(' ')
  }
  tokenizeHtml(html, {
    ontext(start, end) {
      if (hidden) return
      // Each text node decoded alone, as a browser does: "&am<b></b>p;" is not an ampersand.
      if (start !== to) flush()
      if (from < 0) from = start
      to = end
    },
    onopentagname(start, end) {
      tag = html.slice(start, end).toLowerCase()
      markup()
    },
    onopentagend() {
      hidden = HIDDEN.has(tag)
    },
    onselfclosingtag: markup,
    onclosetag() {
      hidden = false
      markup()
    },
    oncomment: markup,
    oncdata: markup,
    ondeclaration: markup,
    onprocessinginstruction: markup,
  })
  flush()
  return { source: decodeHtmlText(html), joined: joined.join(''), spaced: spaced.join('') }
}
