import fc from 'fast-check'
import t from 'tap'
import { rfc5322Date } from '../../../firmware/mime/date.ts'
import { pythonEach } from '../../helpers/python.ts'

t.test("RFC 5322 dates: the numeric zone, and Python's email.utils reads back the same second", async (t) => {
  t.equal(rfc5322Date(Date.UTC(2026, 10, 22, 8, 10, 0)), 'Sun, 22 Nov 2026 08:10:00 +0000')
  const times = fc.sample(fc.integer({ min: 0, max: Date.UTC(2099, 11, 31) }), { numRuns: 500, seed: 3 })
  const dates = times.map(rfc5322Date)
  t.ok(
    dates.every((d) => /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} \+0000$/.test(d)),
    'date-time with a numeric zone (RFC 5322 §3.3), never the obsolete "GMT"',
  )
  const python = pythonEach<string, number>(
    'from email.utils import parsedate_to_datetime\ndef judge(d):\n    return parsedate_to_datetime(d).timestamp()',
    dates,
  )
  t.ok(
    times.every((ms, i) => python[i] === Math.floor(ms / 1000)),
    'Python reads every date back to its second',
  )
})
