import { finished } from 'node:stream/promises'
import { type MimeNode, Splitter, type SplitterChunk } from '@zone-eu/mailsplit'
import { decodeQuotedPrintable } from '../mime/encode.ts'
import { htmlText } from '../mime/html.ts'
import { decodeCharset } from '../mime/words.ts'

/**
 * Reads a report that came in from the internet (a DSN, an MDN, a complaint,
 * an auto-reply, a bounce in free text) into the parts a report parser looks
 * at. The box's own MIME reader (`firmware/mime/tree.ts`) is strict on
 * purpose, for the firm's submissions; a bounce is whatever a receiving server
 * wrote — an mbox "From " line in front, a multipart never closed, 8-bit
 * headers — and must still be read (M8). So this uses mailsplit, the
 * tokenizer under mailparser: well kept, lenient, streaming, with limits on
 * header size and part count, and linear-time header handling. mailparser
 * itself merges `message/delivery-status` into its text output, which loses
 * the one part a DSN parser needs; the tokenizer gives every part as it is.
 *
 * Nothing here is quadratic: each body is decoded once, and what is kept of
 * each part is capped (a report quotes the whole statement; only its headers
 * and the notice matter).
 */
export interface Part {
  /** `text/plain`, `message/delivery-status`, … (lower case); `text/plain` when absent. */
  type: string
  /** The returned message or its headers (`message/rfc822`, `text/rfc822-headers`, …), read as text: embedded messages are not split. */
  returned: boolean
  /** The part's own header fields, unfolded, as `key: value` pairs (keys lower case). */
  headers: readonly (readonly [string, string])[]
  /** The decoded body as text, cut at `PART_TEXT_LIMIT` characters; '' for parts not read (images, PDFs). */
  text: string
}

export interface Parts {
  /** The top-level header fields of the report. */
  headers: readonly (readonly [string, string])[]
  parts: readonly Part[]
}

/** What is kept of one part's body: a notice is short; a quoted statement is not needed past its headers. */
export const PART_TEXT_LIMIT = 64 * 1024
const MAX_PARTS = 256
const MAX_HEAD = 256 * 1024

const READ_TYPES = new Set([
  'text/plain',
  'text/html',
  'text/rfc822-headers',
  'message/delivery-status',
  'message/global-delivery-status',
  'message/disposition-notification',
  'message/global-disposition-notification',
  'message/feedback-report',
  'message/global-headers',
  'message/rfc822',
  'message/global',
])

/** Parts that are (the headers of) the message being reported on. */
const RETURNED_TYPES = new Set(['text/rfc822-headers', 'message/global-headers', 'message/rfc822', 'message/global'])

type Node = MimeNode

/** Splits `raw` into parts. Never throws on malformed input: what could be read is returned. */
export async function readParts(raw: Buffer): Promise<Parts> {
  const nodes: { node: Node; chunks: Buffer[]; size: number }[] = []
  const splitter = new Splitter({ maxHeadSize: MAX_HEAD, maxChildNodes: MAX_PARTS, ignoreEmbedded: true })
  let current: (typeof nodes)[number] | undefined
  splitter.on('data', (chunk: SplitterChunk) => {
    if (chunk.type === 'node') {
      current = { node: chunk, chunks: [], size: 0 }
      nodes.push(current)
    } else if (current && (chunk.type === 'body' || current.node.multipart) && current.size < PART_TEXT_LIMIT * 4) {
      // A multipart's own data is its preamble and delimiters, read when no part followed: a
      // multipart that never uses its boundary, or whose boundary parameter was lost (a folded
      // Content-Type line that lost its indent).
      current.chunks.push(chunk.value)
      current.size += chunk.value.length
    }
  })
  splitter.end(raw)
  // A malformed message ends the split where it broke; the parts read so far stand.
  await finished(splitter).catch(() => undefined)
  const root = nodes[0]
  const parts: Part[] = []
  const parents = new Set(nodes.map((n) => n.node.parentNode))
  for (const { node, chunks } of nodes) {
    if (node.multipart && parents.has(node)) continue
    const type = node.multipart ? 'text/plain' : (node.contentType || 'text/plain').toLowerCase()
    const returned = RETURNED_TYPES.has(type)
    const read = READ_TYPES.has(type) || node.root || Boolean(node.multipart)
    let text = ''
    if (read) {
      text = decodeCharset(decodeTransfer(Buffer.concat(chunks), node.encoding), node.charset || undefined)
      if (type === 'text/html') text = htmlText(text).spaced
      if (text.length > PART_TEXT_LIMIT) text = text.slice(0, PART_TEXT_LIMIT)
    }
    parts.push({ type, returned, headers: fieldsOf(node), text })
  }
  return { headers: root ? fieldsOf(root.node) : [], parts }
}

function fieldsOf(node: Node): [string, string][] {
  if (!node.headers) return []
  const out: [string, string][] = []
  for (const { key, line } of node.headers.getList()) {
    const colon = line.indexOf(':')
    if (colon < 0) continue
    out.push([key, unfold(line.slice(colon + 1))])
  }
  return out
}

/** Joins folded lines: CRLF + whitespace becomes one space. */
export function unfold(value: string): string {
  let out = ''
  let space = false
  for (const c of value) {
    if (c === '\r' || c === '\n' || c === '\t' || c === ' ') {
      space = true
      continue
    }
    if (space && out) out += ' '
    space = false
    out += c
  }
  return out
}

function decodeTransfer(body: Buffer, encoding: string | false): Buffer {
  if (encoding === 'base64') return Buffer.from(body.toString('latin1').replace(/[^A-Za-z0-9+/=]/g, ''), 'base64')
  if (encoding === 'quoted-printable') return decodeQuotedPrintable(body)
  return body
}
