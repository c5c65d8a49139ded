import { boxError } from '../box-errors.ts'
import { parseHeaders, type HeaderField } from './header.ts'
import type { MimeNode } from './tree.ts'

/**
 * Edits of a message already read, without reading it again (parse once,
 * carry facts): a stage that changes bytes — the tracking rewrite, the
 * read-receipt request — gets back the message and its tree with every offset
 * moved to match, so the stages after it (signing) use the tree instead of
 * parsing a second time.
 */

/** Bytes [start, end) of the message become `bytes`. An empty range inserts. */
export interface Splice {
  readonly start: number
  readonly end: number
  readonly bytes: Buffer
  /**
   * When the splice replaces one entity whole (start and end are a part's), what the new entity is:
   * its header is read from `bytes` alone, and these replace the old part's type fields.
   */
  readonly entity?: Pick<MimeNode, 'mime' | 'params' | 'cte'>
}

/**
 * The message with `splices` applied (they must not overlap; any order) and its tree moved to
 * match. Header fields a splice removes leave their node; header fields a splice brings (a
 * field inserted into a header, a whole new entity) are read from the splice's own bytes.
 */
export function spliceMessage(buf: Buffer, tree: MimeNode, splices: readonly Splice[]): { message: Buffer; tree: MimeNode } {
  const sorted = [...splices].sort((a, b) => a.start - b.start || a.end - b.end)
  for (let i = 1; i < sorted.length; i++)
    if (sorted[i]!.start < sorted[i - 1]!.end) throw boxError('EINTERNAL', `overlapping splices at ${sorted[i]!.start} (a bug in the stage that edits)`)
  const pieces: Buffer[] = []
  const placed: { splice: Splice; at: number }[] = []
  let from = 0
  let length = 0
  for (const s of sorted) {
    pieces.push(buf.subarray(from, s.start))
    length += s.start - from
    placed.push({ splice: s, at: length })
    pieces.push(s.bytes)
    length += s.bytes.length
    from = s.end
  }
  pieces.push(buf.subarray(from))
  const message = Buffer.concat(pieces)

  // A position of the old message in the new one: an insertion at p comes before what starts at p
  // and after what ends there.
  const moved = (p: number, isEnd = false) => {
    let shift = 0
    for (const s of sorted) if (s.end < p || (s.end === p && (!isEnd || s.start < s.end))) shift += s.bytes.length - (s.end - s.start)
    return p + shift
  }
  const removed = (h: HeaderField) => sorted.some((s) => s.start <= h.start && h.end <= s.end && s.end > s.start)
  const fieldsIn = (start: number, end: number) =>
    placed
      .filter(({ splice: s }) => !s.entity && s.start >= start && s.end <= end)
      .flatMap(({ splice: s, at }) => parseHeaders(message, at, at + s.bytes.length).headers)

  const move = (n: MimeNode): MimeNode => {
    const whole = placed.find(({ splice: s }) => s.entity && s.start === n.start && s.end === n.end)
    if (whole) {
      const { at, splice } = whole
      const { headers, bodyStart } = parseHeaders(message, at, at + splice.bytes.length)
      return { ...n, ...splice.entity, start: at, bodyStart, end: at + splice.bytes.length, headers, children: [] }
    }
    const kept = n.headers.filter((h) => !removed(h)).map((h) => ({ ...h, start: moved(h.start), end: moved(h.end, true) }))
    const brought = fieldsIn(n.start, n.bodyStart)
    const headers = [...kept, ...brought].sort((a, b) => a.start - b.start)
    const out: MimeNode = {
      ...n,
      start: n.path === '' ? 0 : moved(n.start),
      bodyStart: moved(n.bodyStart),
      end: n.path === '' ? message.length : moved(n.end, true),
      headers,
      children: n.children.map(move),
    }
    if (n.preamble) out.preamble = [moved(n.preamble[0]), moved(n.preamble[1], true)]
    if (n.epilogue) out.epilogue = [moved(n.epilogue[0]), moved(n.epilogue[1], true)]
    return out
  }
  return { message, tree: move(tree) }
}
