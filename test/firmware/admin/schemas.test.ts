import t from 'tap'
import { adminBox, loggedIn, setUpFirstAdmin } from '../../helpers/admin.ts'

/**
 * #34: the admin page's path and query values are declared as route schemas
 * (firmware/admin/schemas.ts), checked by fastify after the login check and
 * before a handler runs. Before, a cast told the handler a value was a string
 * whatever came: a key given twice is an array, and `/queue?statement=a&statement=b`
 * was a 500 (`.trim` of an array).
 */
t.test('route schemas: one string per value, known choices, a bound on length; the login comes first', async (t) => {
  const box = await adminBox(t)
  const outsider = box.client()
  t.equal((await outsider.get('/queue?statement=a&statement=b')).headers.location, '/login', 'without a login: the login page, whatever the query')
  const admin = { name: 'wang', password: 'Tea-kettle 7 orchids' }
  const { secret } = await setUpFirstAdmin(box, admin.name, admin.password)
  const c = await loggedIn(box, admin.name, admin.password, secret)

  const twice = await c.get('/queue?statement=a&statement=b')
  t.equal(twice.status, 400, 'a key given twice: refused, not a 500')
  t.match(twice.body, /querystring\/statement must be string/)
  t.equal((await c.get('/queue?statement=S-1')).status, 200, 'once: the search runs')
  t.equal((await c.get('/api/series?span=week')).status, 400, 'a span the charts do not have')
  t.equal((await c.get('/api/series?span=day')).status, 200)
  t.equal((await c.get(`/queue/${'x'.repeat(101)}`)).status, 414, 'a path value over 100 characters: 414 (fastify maxParamLength)')
  t.equal((await c.get(`/audit?id=${'x'.repeat(1001)}`)).status, 400, 'a query value over 1,000 characters')
  t.equal((await c.get('/reports/paper?month=2026-11&month=2026-12')).status, 400)

  // A form field sent twice counts as not given (no form of the page sends one twice).
  await c.get('/account')
  const form = new URLSearchParams([
    ['_csrf', c.lastCsrf ?? ''],
    ['current', admin.password],
    ['next', 'Orchid-kettle 8 tea'],
    ['next', 'Plum-blossom 9 ink'],
  ]).toString()
  const r = await c.postRaw('/account/password', form)
  t.equal(r.status, 400, 'a field sent twice: refused as not given, not a 500')
  t.match(r.body, /class="notice error"|error/)
})
