import fc from 'fast-check'
import t from 'tap'
import { htmlText, tokenizeHtml } from '../../../firmware/mime/html.ts'
import { findTaiwanIds } from '../../../firmware/pii/taiwan-id.ts'
import { pythonEach } from '../../helpers/python.ts'

/** Python's html.parser: the text a browser renders (no comments, no script or style), references decoded. */
const PY_TEXT = `
from html.parser import HTMLParser
class Text(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.joined, self.spaced, self.skip = [], [], 0
    def handle_starttag(self, tag, attrs):
        self.spaced.append(' ')
        if tag in ('script', 'style'): self.skip += 1
    def handle_startendtag(self, tag, attrs):
        self.spaced.append(' ')
    def handle_endtag(self, tag):
        self.spaced.append(' ')
        if tag in ('script', 'style') and self.skip: self.skip -= 1
    def handle_comment(self, data):
        self.spaced.append(' ')
    def handle_data(self, data):
        if not self.skip:
            self.joined.append(data)
            self.spaced.append(data)
def judge(html):
    p = Text()
    p.feed(html)
    p.close()
    return {'joined': ''.join(p.joined), 'spaced': ' '.join(''.join(p.spaced).split())}
`

t.test("rendered text against Python's html.parser: glued digits stay glued, hidden parts stay hidden", async (t) => {
  const text = fc.stringMatching(/^[A-Za-z0-9 ]{1,6}$/)
  const piece = fc.oneof(
    { weight: 4, arbitrary: text },
    fc.constantFrom('<b>', '</b>', '<td>', '</td>', '<br/>', '<span style="color:white">', '</span>', '<p class="x">', '</p>'),
    fc.constantFrom('<!-- A123456789 -->', '<script>var id = "A123456789"</script>', '<style>p { color: red }</style>'),
    fc.constantFrom('&#65;', '&#x31;', '&amp;', '&lt;', '&gt;', '&quot;', '&nbsp;', '&zwj;'),
  )
  const docs = fc.sample(
    fc.array(piece, { maxLength: 20 }).map((p) => p.join('')),
    { numRuns: 1000, seed: 1866 },
  )
  const python = pythonEach<string, { joined: string; spaced: string }>(PY_TEXT, docs)
  const problems: string[] = []
  docs.forEach((doc, i) => {
    const ours = htmlText(doc)
    const theirs = python[i]!
    if (ours.joined !== theirs.joined)
      problems.push(`joined ${JSON.stringify(doc)}: box ${JSON.stringify(ours.joined)}, Python ${JSON.stringify(theirs.joined)}`)
    if (ours.spaced.split(/\s+/).join(' ').trim() !== theirs.spaced.trim())
      problems.push(`spaced ${JSON.stringify(doc)}: box ${JSON.stringify(ours.spaced)}, Python ${JSON.stringify(theirs.spaced)}`)
  })
  t.same(problems.slice(0, 5), [], `${docs.length} documents`)
})

t.test('the source reading keeps what a browser hides; an unclosed comment or tag ends the markup', async (t) => {
  const h = htmlText('<p title="A&#49;23456789">x</p><!-- B123456789 -->')
  t.match(h.source, /A123456789/, 'attribute values, references decoded')
  t.match(h.source, /B123456789/, 'comments')
  t.equal(h.joined, 'x')
  t.equal(htmlText('ab<!-- never closed A123').joined, 'ab')
  t.equal(htmlText('a < b and 1<2').joined, 'a < b and 1<2', 'a "<" that opens nothing is text')
})

// #34: htmlparser2's tokenizer and the `entities` table replaced a hand-written scanner and a table of 30
// names. The cases where the two readings differed, each now read as a browser reads it.
t.test('where the hand-written reader differed: the whole WHATWG table, a text node decoded alone, <script/>', async (t) => {
  // "&ZeroWidthSpace;" is the standard's name (the old table knew only "zwsp", no HTML name): an ID
  // split by it was not seen in any reading. Now it decodes, and the PII reading drops the invisible character.
  const split = htmlText('<p>A123&ZeroWidthSpace;456789</p>')
  t.equal(split.joined, 'A123\u200b456789')
  t.same(findTaiwanIds(split.joined), ['A123456789'], 'the ID behind &ZeroWidthSpace; is found')
  t.equal(htmlText('&copy2 &NewLine;x').joined, '\u00a92 \nx', 'a legacy name without ";" and a long name')
  t.equal(htmlText('&am<b></b>p;').joined, '&amp;', 'a reference split by a tag is two text nodes, not an ampersand')
  t.equal(htmlText('A1<script/>B2').joined, 'A1B2', 'text after "<script/>" is still read (the old reader dropped it to the end)')
})

t.test('a run of "<" that opens no tag is one text piece for the tokenizer, and a tag right after it is still a tag', async (t) => {
  const html = `${'<'.repeat(100_000)}<b x=1 <y>t</b> < 3 <!-- c --> <?p?>`
  const texts: string[] = []
  const tags: string[] = []
  tokenizeHtml(html, {
    ontext: (a, b) => void texts.push(html.slice(a, b)),
    onopentagname: (a, b) => void tags.push(html.slice(a, b)),
  })
  t.same(texts[0], '<'.repeat(100_000), 'one piece, sliced from the markup itself')
  t.same(tags, ['b'])
  t.ok(texts.includes(' < 3 '), 'a lone "<" in text is text')
  t.equal(htmlText(html).joined.startsWith('<'.repeat(100_000) + 't'), true)
})

t.test('#35: masking the "<" that open nothing keeps every index, a lone surrogate and the text around it included', async (t) => {
  const html = 'a<\uD800< b<b>x</b> 1<2'
  t.same(htmlText(html), { source: html, joined: 'a<\uD800< bx 1<2', spaced: 'a<\uD800< b x  1<2' })
  // A megabyte of "<": every one is text.
  t.equal(htmlText('<'.repeat(1 << 20)).joined.length, 1 << 20)
})
