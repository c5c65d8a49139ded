import fc from 'fast-check'
import t from 'tap'
import { escapeHtml, html, trusted } from '../../../firmware/admin/html.ts'

/** An independent reading of the five entities escapeHtml writes. */
const unescape = (s: string) => s.replace(/&(amp|lt|gt|quot|#39);/g, (_m, e: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" })[e]!)

t.test('every value is escaped: no string becomes markup, and the text reads back whole', async (t) => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary' }), (s) => {
      const out = html`<td title="${s}">${s}</td>`.text
      const inner = out.slice('<td title="'.length, out.length - '</td>'.length)
      const [attr, body] = [inner.slice(0, inner.indexOf('">')), inner.slice(inner.indexOf('">') + 2)]
      return !/[<>"']/.test(attr) && !/[<>"']/.test(body) && unescape(attr) === s && unescape(body) === s
    }),
  )
  t.equal(html`<p>${'<script>alert(1)</script>'}</p>`.text, '<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>')
  t.equal(escapeHtml('plain'), 'plain')
})

t.test('lists, nested templates, numbers; nothing for undefined, null and false; objects as JSON text', async (t) => {
  const items = ['a<', 'b'].map((x) => html`<li>${x}</li>`)
  // prettier-ignore
  t.equal(html`<ul>${items}</ul>`.text, '<ul><li>a&lt;</li><li>b</li></ul>')
  t.equal(html`${3}|${undefined}|${null}|${false}|${true}`.text, '3||||true')
  t.equal(html`${{ a: '<b>' }}`.text, '{&quot;a&quot;:&quot;&lt;b&gt;&quot;}')
  t.equal(html`${trusted('<svg/>')}`.text, '<svg/>', 'only what the box drew itself passes as markup')
})
