/**
 * Server-rendered HTML with escaping by default: every value put into an
 * `html` template is escaped unless it is itself an `Html` made by this
 * module. Statement ids, account names and reply texts come from mail and
 * from people; none of them can become markup (the admin page's XSS tests
 * put payloads in each).
 */
export class Html {
  readonly text: string
  constructor(text: string) {
    this.text = text
  }
  toString(): string {
    return this.text
  }
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

export function escapeHtml(s: string): string {
  let out = ''
  let from = 0
  for (let i = 0; i < s.length; i++) {
    const e = ENTITIES[s[i]!]
    if (e === undefined) continue
    out += s.slice(from, i) + e
    from = i + 1
  }
  return from === 0 ? s : out + s.slice(from)
}

function render(v: unknown): string {
  if (v instanceof Html) return v.text
  if (Array.isArray(v)) return v.map(render).join('')
  if (v === undefined || v === null || v === false) return ''
  if (typeof v === 'object') return escapeHtml(JSON.stringify(v))
  return escapeHtml(typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean' ? v.toString() : '')
}

export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!
  values.forEach((v, i) => (out += render(v) + strings[i + 1]!))
  return new Html(out)
}

/** Markup written by us, never by anyone else (a QR code SVG the library drew). */
export const trusted = (markup: string) => new Html(markup)
