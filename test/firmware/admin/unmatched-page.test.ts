import t from 'tap'
import { adminBox, loggedIn, setUpFirstAdmin } from '../../helpers/admin.ts'
import { dsnFor, sendReport } from '../../helpers/returnpath.ts'

/**
 * #30: the admin page's Unmatched reports 未比對回報 — reports that came back without
 * a token, masked, with the statement their Message-ID points to as a hint for a
 * person, and nothing on the page that applies one.
 */
t.test('Unmatched reports: masked, with what it said, and no button that applies a report', async (t) => {
  const box = await adminBox(t, {
    returnPath: { domains: [{ from: 'bank.example', returnPath: 'bounce.bank.example' }], listen: '127.0.0.1:0' },
  })
  const up = (await box.child.waitFor((r) => r.msg === 'return-path listener up')) as unknown as { listen: string }
  const port = Number(up.listen.split(':').pop())
  t.equal((await box.client().get('/reports/unmatched')).headers.location, '/login', 'not without a login')
  const admin = { name: 'wang', password: 'Tea-kettle 7 orchids' }
  const { secret } = await setUpFirstAdmin(box, admin.name, admin.password)
  const report = dsnFor('lin@example.net', 'failed', '5.1.1').replace('550 5.1.1 user unknown', '550 5.1.1 <lin@example.net>: no such user (A123456789)')
  t.equal(await sendReport(port, 'postmaster@bounce.bank.example', report), 250, 'a report without a token is taken')
  const c = await loggedIn(box, admin.name, admin.password, secret)
  let page = await c.get('/reports/unmatched')
  for (let i = 0; i < 20 && !page.body.includes('invalid-recipient'); i++) {
    await new Promise((r) => setTimeout(r, 250))
    page = await c.get('/reports/unmatched')
  }
  t.equal(page.status, 200)
  t.match(page.body, /Unmatched reports 未比對回報/)
  t.match(page.body, /<td>dsn<\/td>\s*<td>5\.1\.1<\/td>\s*<td>invalid-recipient<\/td>/, 'kind, status and category')
  t.match(page.body, /l\*\*\*\*n@example\.net/, 'the text masked')
  t.notMatch(page.body, /lin@example\.net|A123456789/, 'no address or ID in clear')
  t.notMatch(page.body.split('<main')[1] ?? page.body, /<form[^>]*method="post"/i, 'no form that acts on a report')
  t.match((await c.get('/reports')).body, /href="\/reports\/unmatched"/, 'linked from the reports page')
})
