import fc from 'fast-check'
import t from 'tap'
import { spliceMessage } from '../../../firmware/mime/edit.ts'
import { confirmHtml, pixelHtml, rewriteHtml, rewriteSplices } from '../../../firmware/ledger/rewrite.ts'
import { decodedBody, parseMessage, walk } from '../../../firmware/mime/tree.ts'
import { pythonEach } from '../../helpers/python.ts'

/** Python's html.parser: the href of every <a> and <area> start tag, in order (what a browser would follow). */
const PY_LINKS = `
from html.parser import HTMLParser
class Links(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links = []
    def handle_starttag(self, tag, attrs):
        if tag in ('a', 'area'):
            for k, v in attrs:
                if k == 'href':
                    if v is not None and v.strip()[:8].lower().startswith(('http://', 'https://')):
                        self.links.append(v.strip())
                    break
    handle_startendtag = handle_starttag
def judge(html):
    p = Links()
    p.feed(html)
    p.close()
    return p.links
`

const mark = (_url: string, i: number) => `https://t.example/c/${i}`

/** Markup pieces that trip simple scanners: quotes holding '>', comments and scripts holding links, odd case and spacing. */
const piece = fc.oneof(
  fc.constantFrom(
    '<p>Dear customer,</p>',
    '<a href="https://bank.example/statement?id=1&amp;m=11">statement</a>',
    "<A HREF='https://bank.example/x'>x</A>",
    '<a href=https://bank.example/unquoted>u</a>',
    '<a title="a > b" href="https://bank.example/after-gt">g</a>',
    '<a href="mailto:help@bank.example">mail</a>',
    '<a href="#top">top</a>',
    '<a href = "  http://bank.example/spaced  ">s</a>',
    '<!-- <a href="https://bank.example/in-comment">c</a> -->',
    '<script>var s = "<a href=\'https://bank.example/in-script\'>";</script>',
    '<style>a[href="https://bank.example/in-style"]{}</style>',
    '<map><area shape="rect" href="https://bank.example/area" /></map>',
    '<img src="https://bank.example/logo.png" alt="logo">',
    '<a name="x">anchor without href</a>',
    '<a href="https://bank.example/一月">中文</a>',
    '<a href="https://bank.example/?q=&quot;x&quot;">q</a>',
    '<a data-x="1" href="https://bank.example/two" href="https://bank.example/second-href">2</a>',
    '</body>',
    '<body>',
  ),
  fc.string({ unit: fc.constantFrom('a', ' ', '\n', '&', ';', '對') }),
)

t.test("the links rewritten are exactly those Python's html.parser sees in <a> and <area> (http and https only)", async (t) => {
  const docs = fc.sample(
    fc.array(piece, { maxLength: 12 }).map((p) => p.join('')),
    { numRuns: 400, seed: 11 },
  )
  const py = pythonEach<string, string[]>(PY_LINKS, docs)
  const differ = docs.filter((html, i) => JSON.stringify(rewriteHtml(html, mark, pixelHtml('P')).links) !== JSON.stringify(py[i]))
  t.same(differ.slice(0, 3), [], `${docs.length} documents, ${differ.length} differences`)
  // And the rewritten document, read by Python, links only to the tracker.
  const rewritten = docs.map((html) => rewriteHtml(html, mark, pixelHtml('https://t.example/o/P')).html)
  const after = pythonEach<string, string[]>(PY_LINKS, rewritten)
  t.ok(
    after.every((links) => links.every((l) => l.startsWith('https://t.example/c/'))),
    'after the rewrite every followed link goes to the tracker',
  )
})

t.test('everything but the rewritten href values is kept byte for byte; the image goes before </body>', async (t) => {
  const html = '<html><body><p title="x > y">Hi</p><a class="b" href="https://bank.example/a?x=1&amp;y=2">A</a><a href="mailto:x@y">m</a></body></html>'
  const r = rewriteHtml(html, (url, i) => `https://t.example/c/${i}?u=${url.length}`, pixelHtml('https://t.example/o/T'))
  t.same(r.links, ['https://bank.example/a?x=1&y=2'], 'the URL as a browser reads it (references decoded)')
  t.equal(
    r.html,
    '<html><body><p title="x > y">Hi</p><a class="b" href="https://t.example/c/0?u=30">A</a><a href="mailto:x@y">m</a>' +
      '<img src="https://t.example/o/T" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0" /></body></html>',
  )
  t.match(rewriteHtml('<p>no body tag', mark, pixelHtml('P')).html, /^<p>no body tag<img src="P"/, 'without </body>, at the end')
  const confirm = rewriteHtml(html, undefined, confirmHtml('https://t.example/r/R'))
  t.same(confirm.links, [], 'without a link function, links are left alone')
  t.match(
    confirm.html,
    /href="https:\/\/bank\.example\/a\?x=1&amp;y=2".*<p style="margin:16px 0"><a href="https:\/\/t\.example\/r\/R">確認收到對帳單 \/ Confirm receipt of this statement<\/a><\/p><\/body>/,
  )
})

t.test('in a mail: HTML parts rewritten and re-encoded; the plain-text part and the PDF keep their bytes (Python reads the result)', async (t) => {
  const pdf = Buffer.from('%PDF-1.7\n% statement bytes\n%%EOF\n')
  const htmlQp = '<html><body><a href=3D"https://bank.example/s?a=3D1">=E5=B8=B3=E5=96=AE</a></body></html>'
  const raw = Buffer.from(
    'From: statements@bank.example\r\nTo: c@example.net\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="m"\r\n\r\n' +
      '--m\r\nContent-Type: multipart/alternative; boundary="a"\r\n\r\n' +
      '--a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee https://bank.example/s?a=1\r\n' +
      `--a\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\nContent-ID: <h1>\r\n\r\n${htmlQp}\r\n` +
      '--a--\r\n' +
      `--m\r\nContent-Type: application/pdf; name="s.pdf"\r\nContent-Disposition: attachment; filename="s.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n${pdf.toString('base64')}\r\n` +
      '--m--\r\n',
  )
  const out = rewriteMessage(raw, (_u, i) => `https://t.example/c/${i}`, pixelHtml('https://t.example/o/T'))!
  t.same(out.links, ['https://bank.example/s?a=1'])
  t.same(out.tree, parseMessage(out.message), '#34: the tree moved with the edit is the one a fresh reading gives')
  const leaves = [...walk(parseMessage(out.message))].filter((n) => n.children.length === 0)
  t.same(
    leaves.map((n) => n.mime),
    ['text/plain', 'text/html', 'application/pdf'],
  )
  t.equal(decodedBody(out.message, leaves[0]!).toString(), 'See https://bank.example/s?a=1', 'plain text untouched')
  t.same(decodedBody(out.message, leaves[2]!), pdf, 'the PDF untouched')
  const [py] = pythonEach<string, { html: string; cid: string; plain: string }>(
    'import email, email.policy\ndef judge(b):\n' +
      '    m = email.message_from_bytes(b.encode("latin1"), policy=email.policy.default)\n' +
      '    h = m.get_body(("html",))\n' +
      '    return {"html": h.get_content(), "cid": h["Content-ID"], "plain": m.get_body(("plain",)).get_content()}',
    [out.message.toString('latin1')],
  )
  t.match(py!.html, '<a href="https://t.example/c/0">帳單</a><img src="https://t.example/o/T"', 'the HTML as Python decodes it')
  t.equal(py!.cid, '<h1>', "the part's other header fields kept")
  t.equal(rewriteMessage(Buffer.from('From: a@b\r\nContent-Type: text/plain\r\n\r\nhi\r\n'), mark, pixelHtml('P')), undefined, 'no HTML part: nothing to do')
})

/** The rewrite as the tracking stage applies it: edits of the tree read once, applied to bytes and tree together. */
function rewriteMessage(raw: Buffer, link: ((url: string, index: number) => string) | undefined, tail: string) {
  const tree = parseMessage(raw)
  const r = rewriteSplices(raw, tree, link, tail)
  if (!r) return undefined
  return { ...spliceMessage(raw, tree, r.splices), links: r.links }
}
