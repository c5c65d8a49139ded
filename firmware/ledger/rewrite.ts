import { base64Lines } from '../mime/encode.ts'
import { decodeEntities } from '../mime/html.ts'
import type { Splice } from '../mime/edit.ts'
import { decodedText, isAttachment, walk, type MimeNode } from '../mime/tree.ts'

/** What rewriting one HTML text did. */
export interface Rewritten {
  html: string
  /** The links replaced, in document order (their index is the link index in tokens). */
  links: string[]
}

const escapeAttr = (s: string) => s.replaceAll('&', '&amp;').replaceAll('"', '&quot;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')

/** Only web links are counted; mailto:, tel:, #anchors, cid: and the like stay as they are. */
function isWebLink(url: string): boolean {
  const u = url.trim().slice(0, 8).toLowerCase()
  return u.startsWith('https://') || u.startsWith('http://')
}

/**
 * Rewrites the links of an HTML text (M9, opens and clicks): the href of each
 * `<a>` and `<area>` with an http(s) URL becomes `link(url, index)`, and a
 * 1×1 image `pixel` goes before the last `</body>` (or at the end). One
 * linear pass, no regular expression over the markup: comments, `<script>`
 * and `<style>` are passed over, attribute values are read with their quotes
 * (a `>` inside a quoted value does not end the tag), everything not rewritten
 * is copied byte for byte.
 */
export function rewriteHtml(html: string, link: ((url: string, index: number) => string) | undefined, tail: string): Rewritten {
  const out: string[] = []
  const links: string[] = []
  const lower = html.toLowerCase()
  let pos = 0
  let copied = 0
  const n = html.length
  while (pos < n) {
    const lt = html.indexOf('<', pos)
    if (lt < 0) break
    if (html.startsWith('<!--', lt)) {
      const end = html.indexOf('-->', lt + 4)
      if (end < 0) break
      pos = end + 3
      continue
    }
    let i = lt + 1
    while (i < n && isNameChar(lower.charCodeAt(i))) i++
    const name = lower.slice(lt + 1, i)
    if (name === '') {
      pos = lt + 1
      continue
    }
    // Attributes up to the tag's end, quotes respected.
    let hrefStart = -1
    let hrefEnd = -1
    let hrefValue = ''
    for (;;) {
      while (i < n && isSpace(html.charCodeAt(i))) i++
      if (i >= n || html[i] === '>') break
      if (html[i] === '/') {
        i++
        continue
      }
      const nameStart = i
      while (i < n && !isSpace(html.charCodeAt(i)) && html[i] !== '=' && html[i] !== '>' && html[i] !== '/') i++
      const attr = lower.slice(nameStart, i)
      if (i === nameStart) i++ // a stray character: step over it
      while (i < n && isSpace(html.charCodeAt(i))) i++
      if (html[i] !== '=') continue
      i++
      while (i < n && isSpace(html.charCodeAt(i))) i++
      const valueStart = i
      let value: string
      if (html[i] === '"' || html[i] === "'") {
        const close = html.indexOf(html[i]!, i + 1)
        const end = close < 0 ? n : close
        value = html.slice(i + 1, end)
        i = close < 0 ? n : close + 1
      } else {
        while (i < n && !isSpace(html.charCodeAt(i)) && html[i] !== '>') i++
        value = html.slice(valueStart, i)
      }
      if (attr === 'href' && hrefStart < 0) {
        hrefStart = valueStart
        hrefEnd = i
        hrefValue = value
      }
    }
    if (link && (name === 'a' || name === 'area') && hrefStart >= 0) {
      const url = decodeEntities(hrefValue).trim()
      if (isWebLink(url)) {
        out.push(html.slice(copied, hrefStart), `"${escapeAttr(link(url, links.length))}"`)
        copied = hrefEnd
        links.push(url)
      }
    }
    if (name === 'script' || name === 'style') {
      const close = lower.indexOf(`</${name}`, i)
      pos = close < 0 ? n : close
      continue
    }
    pos = i + 1
  }
  out.push(html.slice(copied))
  let text = out.join('')
  const body = text.toLowerCase().lastIndexOf('</body')
  text = body < 0 ? text + tail : text.slice(0, body) + tail + text.slice(body)
  return { html: text, links }
}

function isNameChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39)
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d
}

/** An HTML part of the mail that a reader sees (not an attachment). */
function htmlParts(root: MimeNode): MimeNode[] {
  return [...walk(root)].filter((n) => n.children.length === 0 && n.mime === 'text/html' && !isAttachment(n))
}

/**
 * Rewrites every HTML part a reader sees (rewriteHtml), re-encoded as UTF-8
 * base64 with its other header fields as they were; plain-text parts,
 * attachments (PDFs) and everything else keep their bytes. Reads the tree the
 * mail was parsed into once (parse once): the answer is the edits, which
 * `edited` (pipeline/edited.ts) applies to bytes and tree together. `link` is
 * called with a running index across the parts. Undefined when the mail has no HTML part.
 */
export function rewriteSplices(
  message: Buffer,
  tree: MimeNode,
  link: ((url: string, index: number) => string) | undefined,
  tail: string,
): { splices: Splice[]; links: string[] } | undefined {
  const parts = htmlParts(tree)
  if (parts.length === 0) return undefined
  const links: string[] = []
  let index = 0
  const splices = parts.map((node): Splice => {
    const r = rewriteHtml(decodedText(message, node), link && ((url) => link(url, index++)), tail)
    for (const l of r.links) links.push(l)
    const kept = node.headers.filter((h) => h.key !== 'content-type' && h.key !== 'content-transfer-encoding').map((h) => message.subarray(h.start, h.end))
    const head = Buffer.from('Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n')
    const bytes = Buffer.concat([...kept, head, base64Lines(Buffer.from(r.html, 'utf8'))])
    return { start: node.start, end: node.end, bytes, entity: { mime: 'text/html', params: { charset: 'utf-8' }, cte: 'base64' } }
  })
  return { splices, links }
}

/** The tracking image: 1×1, at the end of the body. */
export const pixelHtml = (url: string) => `<img src="${escapeAttr(url)}" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0" />`

/** The confirmation link of a read-receipt class (M11), in Chinese and English. */
export const confirmHtml = (url: string) => `<p style="margin:16px 0"><a href="${escapeAttr(url)}">確認收到對帳單 / Confirm receipt of this statement</a></p>`
