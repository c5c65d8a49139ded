import { channel } from 'node:diagnostics_channel'
import { base64Problem, decodeQuotedPrintable } from './encode.ts'
import { ambiguous, MAX_LINE, MimeError, parseHeaders, type HeaderField } from './header.ts'
import { parseParams, type ParamValue } from './params.ts'
import { decodeCharset, decodeWords } from './words.ts'

/**
 * One reading of a message's MIME structure (RFC 5322, RFC 2045–2049), and
 * only one: the box parses each submitted mail once and refuses any mail whose
 * structure different readers could take differently — the box must judge the
 * statement the customer's software will show. Parts are byte ranges of the
 * message (nothing is copied); every loop is linear in the input.
 *
 * Refusals (`MimeError.code`):
 * - EMESSAGE_LINE_TOO_LONG: a header line over 998 octets (RFC 5322 §2.1.1).
 * - EMESSAGE_AMBIGUOUS: a header block line that is no field (one reader ends the
 *   header there, another skips it); a field name with spaces; Content-Type,
 *   Content-Transfer-Encoding or Content-Disposition twice in an entity, or a
 *   single-instance field (From, Subject, X-Statement-ID…) twice in the
 *   message; a parameter twice (boundary, charset, filename…, also `filename`
 *   beside `filename*`); `name` and `filename` naming different files; a line
 *   starting with a boundary that is no delimiter (a prefix of a nested
 *   boundary, or garbage after it); content hidden in a multipart's preamble or
 *   epilogue; base64 that readers decode differently; an unknown transfer
 *   encoding; uuencoded data in a text part (some readers show it as an
 *   attachment); message/partial.
 * - EMESSAGE_MALFORMED: a multipart without a boundary or its closing delimiter,
 *   a Content-Type without type/subtype, nesting deeper than 16 or more than
 *   500 parts, a multipart or message/rfc822 with an encoding other than 7bit,
 *   8bit or binary.
 */

export interface MimeNode {
  /** Dotted position: "" for the message, "1", "1.2" … for parts (as IMAP numbers them). */
  path: string
  depth: number
  /** Offsets into the message: the entity's first header byte, its body, its end (exclusive). */
  start: number
  bodyStart: number
  end: number
  headers: HeaderField[]
  /** Lower-cased "type/subtype" (text/plain when absent, RFC 2045 §5.2). */
  mime: string
  params: Record<string, string>
  /** Lower-cased Content-Transfer-Encoding (7bit when absent). */
  cte: string
  /** Lower-cased disposition type ("" when absent). */
  disposition: string
  /** The file name a reader shows: Content-Disposition filename, else Content-Type name (decoded). */
  filename: string
  children: MimeNode[]
  /** For a multipart: preamble and epilogue ranges. */
  preamble?: [number, number]
  epilogue?: [number, number]
}

export interface Limits {
  maxDepth: number
  maxParts: number
}

export const DEFAULT_LIMITS: Limits = { maxDepth: 16, maxParts: 500 }

/** Fields a message has at most once (RFC 5322 §3.6, and the firm's statement tags). */
const SINGLE = new Set([
  'from',
  'sender',
  'reply-to',
  'to',
  'cc',
  'subject',
  'date',
  'message-id',
  'mime-version',
  'x-statement-id',
  'x-statement-class',
  'x-statement-batch',
])
const CONTENT_ONCE = ['content-type', 'content-transfer-encoding', 'content-disposition']
const ENCODINGS = new Set(['7bit', '8bit', 'binary', 'quoted-printable', 'base64'])
const IDENTITY = new Set(['7bit', '8bit', 'binary'])
const PREAMBLE_MAX = 1024

const malformed = (why: string) => new MimeError('EMESSAGE_MALFORMED', why)

/** Every whole reading of a message is told here (#34 parse once: tests and operators can count them). */
export const PARSE_CHANNEL = channel('statement-gateway:mime.parse')

/** Parses a whole message (CRLF line endings, as submission guarantees). Throws MimeError. */
export function parseMessage(buf: Buffer, limits: Limits = DEFAULT_LIMITS): MimeNode {
  if (PARSE_CHANNEL.hasSubscribers) PARSE_CHANNEL.publish({ bytes: buf.length })
  const state = { parts: 0, limits }
  const top = parseNode(buf, 0, buf.length, '', 0, [], state, 'text/plain')
  const counts = new Map<string, number>()
  for (const h of top.headers) counts.set(h.key, (counts.get(h.key) ?? 0) + 1)
  for (const [key, n] of counts) if (n > 1 && SINGLE.has(key)) throw ambiguous(`the message has ${n} ${key} fields`)
  return top
}

function parseNode(
  buf: Buffer,
  start: number,
  end: number,
  path: string,
  depth: number,
  boundaries: string[],
  state: { parts: number; limits: Limits },
  defaultType: string,
): MimeNode {
  if (depth > state.limits.maxDepth) throw malformed(`MIME nesting deeper than ${state.limits.maxDepth}`)
  if (++state.parts > state.limits.maxParts) throw malformed(`more than ${state.limits.maxParts} MIME parts`)
  const { headers, bodyStart } = parseHeaders(buf, start, end)
  const where = path ? `part ${path}` : 'the message'
  const once = (key: string) => {
    const found = headers.filter((h) => h.key === key)
    if (found.length > 1) throw ambiguous(`${where} has ${found.length} ${key} fields`)
    return found[0]?.value
  }
  const [ctRaw, cteRaw, cdRaw] = CONTENT_ONCE.map(once)
  const ct = ctRaw === undefined ? undefined : structured(ctRaw, where, 'Content-Type')
  // RFC 2045 §5.2: text/plain; in a multipart/digest, message/rfc822 (RFC 2046 §5.1.5).
  let mime = defaultType
  if (ct) {
    const slash = ct.value.indexOf('/')
    const type = ct.value.slice(0, slash).trim().toLowerCase()
    const subtype = ct.value
      .slice(slash + 1)
      .trim()
      .toLowerCase()
    if (slash <= 0 || !type || !subtype || !isToken(type) || !isToken(subtype))
      throw malformed(`${where} has a Content-Type without type/subtype ("${ct.value.slice(0, 60)}")`)
    mime = `${type}/${subtype}`
  }
  const params = ct?.params ?? {}
  const cte = (cteRaw ?? '7bit').trim().toLowerCase()
  if (!ENCODINGS.has(cte)) throw ambiguous(`${where} has the transfer encoding "${cte.slice(0, 40)}", which not every reader decodes`)
  const cd = cdRaw === undefined ? undefined : structured(cdRaw, where, 'Content-Disposition')
  const fromDisposition = cd?.params.filename
  const fromType = params.name
  if (fromDisposition !== undefined && fromType !== undefined && fromDisposition !== fromType) {
    throw ambiguous(`${where} is named both "${fromDisposition.slice(0, 60)}" and "${fromType.slice(0, 60)}"; readers show one or the other`)
  }
  const node: MimeNode = {
    path,
    depth,
    start,
    bodyStart,
    end,
    headers,
    mime,
    params,
    cte,
    disposition: (cd?.value ?? '').toLowerCase(),
    filename: fromDisposition ?? fromType ?? '',
    children: [],
  }
  if (mime === 'message/partial') throw ambiguous(`${where} is message/partial: readers that reassemble fragments see content the box cannot check`)
  if (mime.startsWith('multipart/')) {
    if (!IDENTITY.has(cte)) throw malformed(`${where} is a multipart with transfer encoding ${cte} (RFC 2045 §6.4 allows 7bit, 8bit, binary)`)
    const boundary = params.boundary
    if (!boundary) throw malformed(`${where} is a multipart without a boundary`)
    if (boundary.length > 70) throw malformed(`${where} has a boundary longer than 70 characters (RFC 2046 §5.1.1)`)
    const split = splitParts(buf, bodyStart, end, boundary, where)
    node.preamble = split.preamble
    node.epilogue = split.epilogue
    for (const range of [split.preamble, split.epilogue]) checkOutside(buf, range, where)
    const inner = mime === 'multipart/digest' ? 'message/rfc822' : 'text/plain'
    split.parts.forEach(([s, e], i) =>
      node.children.push(parseNode(buf, s, e, path ? `${path}.${i + 1}` : String(i + 1), depth + 1, [...boundaries, boundary], state, inner)),
    )
  } else if (mime === 'message/rfc822' || mime === 'message/global') {
    if (!IDENTITY.has(cte)) throw malformed(`${where} is a message/rfc822 with transfer encoding ${cte} (RFC 2046 §5.2.1 allows 7bit, 8bit, binary)`)
    node.children.push(parseNode(buf, bodyStart, end, path ? `${path}.1` : '1', depth + 1, boundaries, state, 'text/plain'))
  } else if (cte === 'base64') {
    const problem = base64Problem(buf.subarray(bodyStart, end))
    if (problem) throw ambiguous(`${where} has ${problem}`)
  } else if (mime.startsWith('text/') && hasUuencode(buf, bodyStart, end, cte)) {
    throw ambiguous(`${where} holds uuencoded data ("begin NNN name"), which some readers show as an attachment`)
  }
  return node
}

function structured(value: string, where: string, field: string): ParamValue {
  const p = parseParams(value)
  if (p.ambiguity) throw ambiguous(`the ${field} of ${where}: ${p.ambiguity}`)
  return p
}

/**
 * The body parts of a multipart body (RFC 2046 §5.1.1): the bytes between
 * delimiter lines, without the CRLF that belongs to the next delimiter. A
 * line that starts with the delimiter but is none (e.g. the boundary of a
 * nested part that has this one as a prefix) is refused: some readers cut
 * there and others do not.
 */
function splitParts(
  buf: Buffer,
  start: number,
  end: number,
  boundary: string,
  where: string,
): { parts: [number, number][]; preamble: [number, number]; epilogue: [number, number] } {
  const delimiter = Buffer.from(`--${boundary}`, 'latin1')
  const lines: { at: number; next: number; close: boolean }[] = []
  let pos = start
  for (;;) {
    const i = buf.indexOf(delimiter, pos)
    if (i < 0 || i >= end) break
    pos = i + delimiter.length
    const atLineStart = i === start || (buf[i - 1] === 0x0a && buf[i - 2] === 0x0d)
    if (!atLineStart) continue
    let j = i + delimiter.length
    const close = buf[j] === 0x2d && buf[j + 1] === 0x2d && j + 1 < end
    if (close) j += 2
    while (j < end && (buf[j] === 0x20 || buf[j] === 0x09)) j++
    const lineOk = j === end || (buf[j] === 0x0d && buf[j + 1] === 0x0a)
    if (!lineOk) throw ambiguous(`in ${where}, a line starts with the boundary "${boundary.slice(0, 40)}" but is no delimiter`)
    lines.push({ at: i, next: Math.min(end, j + 2), close })
    if (close) break
  }
  const last = lines.at(-1)
  if (!last?.close) throw malformed(`multipart body with boundary "${boundary.slice(0, 40)}" is not terminated (${where})`)
  if (lines.length < 2) throw malformed(`${where} is a multipart with no parts`)
  const parts: [number, number][] = []
  for (let k = 0; k < lines.length - 1; k++) {
    const from = lines[k]!.next
    parts.push([from, Math.max(from, lines[k + 1]!.at - 2)]) // the CRLF before a delimiter belongs to it
  }
  const first = lines[0]!.at
  return { parts, preamble: [start, Math.max(start, first - 2)], epilogue: [last.next, end] }
}

/** The preamble and epilogue are for readers without MIME; content there is hidden from some readers and not others. */
function checkOutside(buf: Buffer, [s, e]: [number, number], where: string): void {
  const text = buf.subarray(s, e)
  let nonSpace = 0
  for (let i = 0; i < text.length; i++) {
    const b = text[i]!
    if (b !== 0x20 && b !== 0x09 && b !== 0x0d && b !== 0x0a) nonSpace++
  }
  if (nonSpace === 0) return
  if (nonSpace > PREAMBLE_MAX) throw ambiguous(`${where} carries ${nonSpace} bytes outside its parts (preamble or epilogue)`)
  for (let i = 0; i < text.length;) {
    let eol = text.indexOf(0x0a, i)
    if (eol < 0) eol = text.length
    if (eol - i > MAX_LINE + 1) throw new MimeError('EMESSAGE_LINE_TOO_LONG', `a line of ${eol - i} octets outside the parts of ${where}`)
    const line = text
      .subarray(i, Math.min(eol, i + 16))
      .toString('latin1')
      .toLowerCase()
    if (line.startsWith('--') || line.startsWith('content-') || line.startsWith('begin ')) {
      throw ambiguous(`${where} has MIME-like content outside its parts (preamble or epilogue)`)
    }
    i = eol + 1
  }
}

/** A uuencode header line ("begin 644 name") in a text part, decoded first if quoted-printable. */
function hasUuencode(buf: Buffer, start: number, end: number, cte: string): boolean {
  const body = cte === 'quoted-printable' ? decodeQuotedPrintable(buf.subarray(start, end)) : buf.subarray(start, end)
  const needle = Buffer.from('begin ')
  for (let i = body.indexOf(needle); i >= 0; i = body.indexOf(needle, i + 6)) {
    if (i > 0 && body[i - 1] !== 0x0a) continue
    let j = i + 6
    let digits = 0
    for (; j < body.length && body[j]! >= 0x30 && body[j]! <= 0x37; j++) digits++
    if ((digits === 3 || digits === 4) && body[j] === 0x20) return true
  }
  return false
}

function isToken(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c <= 0x20 || c >= 0x7f || '()<>@,;:\\"/[]?='.includes(s[i]!)) return false
  }
  return s.length > 0
}

/** A leaf's content with its transfer encoding undone (base64 was checked unambiguous when parsed). */
export function decodedBody(buf: Buffer, node: MimeNode): Buffer {
  const body = buf.subarray(node.bodyStart, node.end)
  if (node.cte === 'base64') return Buffer.from(body.toString('latin1'), 'base64')
  if (node.cte === 'quoted-printable') return decodeQuotedPrintable(body)
  return body
}

/** A text leaf's content as characters, in its declared charset. */
export function decodedText(buf: Buffer, node: MimeNode): string {
  return decodeCharset(decodedBody(buf, node), node.params.charset)
}

/** Every node, depth first, the message itself first. */
export function* walk(node: MimeNode): Generator<MimeNode> {
  yield node
  for (const c of node.children) yield* walk(c)
}

/** Is this a leaf a reader offers as an attachment (rather than shows as the mail's text)? */
export function isAttachment(node: MimeNode): boolean {
  if (node.children.length) return false
  if (node.disposition === 'attachment' || node.filename !== '') return true
  return !node.mime.startsWith('text/') && node.depth > 0
}

/** A header value as a reader shows it: RFC 2047 words decoded. */
export function displayed(value: string): string {
  return decodeWords(value)
}
