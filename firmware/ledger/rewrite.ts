import { base64Lines } from '../mime/encode.ts'
import { decodeHtmlAttribute, quotedValue, tokenizeHtml } from '../mime/html.ts'
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
 * `<a>` and `<area>` with an http(s) URL becomes `link(url, index)`, and
 * `tail` (the pixel, the confirmation link) goes before the last `</body>` (or
 * at the end). Read by the same tokenizer as the policy's readings
 * (mime/html.ts): comments, `<script>` and `<style>` are passed over, a `>`
 * inside a quoted value does not end the tag, the first href of a tag counts
 * (as in a browser), and everything not rewritten is copied byte for byte.
 */
export function rewriteHtml(html: string, link: ((url: string, index: number) => string) | undefined, tail: string): Rewritten {
  const out: string[] = []
  const links: string[] = []
  let copied = 0
  let tag = ''
  let attr = ''
  let href: { start: number; end: number; value: string } | undefined
  let value: { start: number; end: number } | undefined
  if (link)
    tokenizeHtml(html, {
      onopentagname(start, end) {
        tag = html.slice(start, end).toLowerCase()
        href = undefined
      },
      onattribname(start, end) {
        attr = html.slice(start, end).toLowerCase()
        value = undefined
      },
      onattribdata(start, end) {
        value = { start: value?.start ?? start, end }
      },
      onattribend(quote, end) {
        if (attr !== 'href' || href || !value) return
        // The splice takes the quotes with it: the new value is always written in double quotes.
        href = { start: quotedValue(quote) ? value.start - 1 : value.start, end, value: html.slice(value.start, value.end) }
      },
      onopentagend: rewrite,
      onselfclosingtag: rewrite,
    })
  function rewrite(): void {
    if (!href || (tag !== 'a' && tag !== 'area')) return
    const url = decodeHtmlAttribute(href.value).trim()
    if (!isWebLink(url)) return
    out.push(html.slice(copied, href.start), `"${escapeAttr(link!(url, links.length))}"`)
    copied = href.end
    links.push(url)
  }
  out.push(html.slice(copied))
  let text = out.join('')
  const body = text.toLowerCase().lastIndexOf('</body')
  text = body < 0 ? text + tail : text.slice(0, body) + tail + text.slice(body)
  return { html: text, links }
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
