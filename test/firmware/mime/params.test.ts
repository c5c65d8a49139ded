import fc from 'fast-check'
import t from 'tap'
import { parseParams } from '../../../firmware/mime/params.ts'
import { pythonEach } from '../../helpers/python.ts'

t.test("Content-Type parameters against Python's email package: what the box takes as unambiguous, Python reads alike", async (t) => {
  const token = fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,8}$/)
  const quoted = fc.array(fc.oneof(token, fc.constantFrom(' ', ';', '=', ',', '\\"', '\\\\', '對帳')), { maxLength: 5 }).map((p) => `"${p.join('')}"`)
  const pct = (s: string) => [...Buffer.from(s, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('')
  const name = fc.constantFrom('name', 'charset', 'format', 'boundary', 'x-note')
  const param = fc.oneof(
    fc.tuple(name, fc.oneof(token, quoted)).map(([k, v]) => `${k}=${v}`),
    // RFC 2231: an encoded value, or one split into sections (encoded or not), sometimes out of order or with a gap.
    fc.tuple(name, fc.constantFrom('對帳單.pdf', 'statement 11.pdf', 'a;b')).map(([k, v]) => `${k}*=utf-8''${pct(v)}`),
    fc.tuple(name, token, token, fc.boolean()).map(([k, a, b, swap]) => (swap ? `${k}*1="${b}"; ${k}*0="${a}"` : `${k}*0="${a}"; ${k}*1="${b}"`)),
    fc.tuple(name, fc.constantFrom('對帳', 'ab')).map(([k, v]) => `${k}*0*=utf-8''${pct(v)}; ${k}*1*=${pct('.pdf')}`),
    fc.tuple(name, token).map(([k, v]) => `${k}*0="${v}"; ${k}*2="x"`),
  )
  const values = fc.sample(
    fc.array(param, { maxLength: 4 }).map((ps) => ['application/pdf', ...ps].join('; ')),
    { numRuns: 1500, seed: 2231 },
  )
  const python = pythonEach<string, Record<string, string>>(
    'from email import message_from_string, policy\n' +
      'def judge(v):\n    m = message_from_string("Content-Type: " + v + "\\n\\n", policy=policy.default)\n' +
      '    return {k.lower(): str(x) for k, x in m["content-type"].params.items()}',
    values,
  )
  const problems: string[] = []
  let clean = 0
  values.forEach((v, i) => {
    const ours = parseParams(v)
    if (ours.ambiguity) return
    clean++
    const theirs = python[i]!
    if (JSON.stringify(Object.entries(ours.params).sort()) !== JSON.stringify(Object.entries(theirs).sort()))
      problems.push(`${v}\n  box ${JSON.stringify(ours.params)}\n  Python ${JSON.stringify(theirs)}`)
  })
  t.ok(clean > 400, `${clean} of ${values.length} unambiguous to the box`)
  t.same(problems.slice(0, 3), [], 'parameters read alike')
})
