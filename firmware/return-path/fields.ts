/**
 * The field blocks of RFC 3464 (delivery-status), RFC 8098
 * (disposition-notification) and RFC 5965 (feedback-report) bodies: groups
 * of `Name: value` lines separated by blank lines, with folded continuation
 * lines. One linear pass; names come back in lower case.
 */
export type Fields = Map<string, string>

/** The longest field value kept (a Diagnostic-Code is a reply of a few lines). */
const FIELD_LIMIT = 8 * 1024

const RECIPIENT_FIELDS = new Set(['final-recipient', 'original-recipient'])

export function fieldBlocks(text: string): Fields[] {
  const blocks: Fields[] = []
  let block: Fields = new Map()
  let last: string | undefined
  for (const rawLine of text.split('\n')) {
    const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine
    if (line.trim() === '') {
      if (block.size) blocks.push(block)
      block = new Map()
      last = undefined
      continue
    }
    if ((line[0] === ' ' || line[0] === '\t') && last) {
      // A value is cut at FIELD_LIMIT: a field of a million folded lines costs no more than one of a few.
      const value = block.get(last)!
      if (value.length < FIELD_LIMIT) block.set(last, value ? `${value} ${line.trim()}` : line.trim())
      continue
    }
    const colon = line.indexOf(':')
    if (colon <= 0 || colon > 40 || line.slice(0, colon).includes(' ')) {
      last = undefined
      continue
    }
    last = line.slice(0, colon).toLowerCase()
    // Some servers leave out the blank line between recipients (AOL): a recipient field seen
    // again begins the next recipient's block.
    if (RECIPIENT_FIELDS.has(last) && block.has(last)) {
      blocks.push(block)
      block = new Map()
    }
    // The first occurrence of a field is the one that counts (RFC 3464 allows each once per block).
    if (!block.has(last)) block.set(last, line.slice(colon + 1).trim())
    else last = undefined
  }
  if (block.size) blocks.push(block)
  return blocks
}

/** The type of a typed field (`smtp`, `x-unix`, `rfc822`), in lower case, or '' when it has none. */
export function valueType(value: string | undefined): string {
  if (!value) return ''
  const semi = value.indexOf(';')
  const type = semi > 0 && semi < 20 ? value.slice(0, semi).trim().toLowerCase() : ''
  return /^[a-z0-9-]+$/.test(type) ? type : ''
}

/**
 * The value of a typed field (`rfc822; a@b`, `smtp; 550 …`, `utf-8; …`)
 * without its type. RFC 6533's utf-8 address type writes non-ASCII as
 * `\x{HHHH}`; that is decoded.
 */
export function typedValue(value: string | undefined): string {
  if (!value) return ''
  const semi = value.indexOf(';')
  const type = semi > 0 && semi < 20 ? value.slice(0, semi).trim().toLowerCase() : ''
  const v = semi > 0 && semi < 20 && /^[a-z0-9-]+$/.test(type) ? value.slice(semi + 1).trim() : value.trim()
  return type === 'utf-8' || v.includes('\\x{') ? decodeUtf8Xtext(v) : v
}

/** RFC 6533 3.  utf-8-addr-xtext / unitext: `\x{HHHH}` is the code point HHHH. */
export function decodeUtf8Xtext(v: string): string {
  let out = ''
  let i = 0
  while (i < v.length) {
    const at = v.indexOf('\\x{', i)
    if (at < 0) {
      out += v.slice(i)
      break
    }
    const end = v.indexOf('}', at)
    const hex = end > at ? v.slice(at + 3, end) : ''
    if (hex.length >= 1 && hex.length <= 6 && /^[0-9A-Fa-f]+$/.test(hex) && Number.parseInt(hex, 16) <= 0x10ffff) {
      out += v.slice(i, at) + String.fromCodePoint(Number.parseInt(hex, 16))
      i = end + 1
    } else {
      out += v.slice(i, at + 3)
      i = at + 3
    }
  }
  return out
}

/** An address without its angle brackets and comments: `<A@B>` → `A@B`. */
export function bareAddress(v: string): string {
  let s = v.trim()
  const lt = s.lastIndexOf('<')
  const gt = s.lastIndexOf('>')
  if (lt >= 0 && gt > lt) s = s.slice(lt + 1, gt)
  const paren = s.indexOf('(')
  if (paren > 0) s = s.slice(0, paren)
  return s.trim().replace(/^["']|["']$/g, '')
}
