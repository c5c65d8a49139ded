import fc from 'fast-check'
import t from 'tap'
import { domainOf, fromAddress, fromMailbox } from '../../../firmware/mime/address.ts'
import { MimeError } from '../../../firmware/mime/header.ts'
import { pythonEach } from '../../helpers/python.ts'

const box = (value: string): string | { refused: string } => {
  try {
    return fromMailbox(value) ?? { refused: 'none' }
  } catch (err) {
    if (err instanceof MimeError) return { refused: err.code }
    throw err
  }
}

t.test('the domain of an address: after the last "@", lower case', async (t) => {
  t.equal(domainOf('Statements@Bank.Example'), 'bank.example')
  t.equal(domainOf('"a@b"@bank.example'), 'bank.example')
  t.equal(fromAddress(Buffer.from('From: "Bank, Ltd" <Statements@Bank.Example>\r\nSubject: x\r\n\r\nbody\r\n')), 'statements@bank.example')
})

t.test("From fields against Python's header parser: one mailbox read alike, two never taken as one", async (t) => {
  const atom = fc.stringMatching(/^[a-z][a-z0-9]{0,6}$/)
  const addr = fc.tuple(atom, atom, atom).map(([l, d, tld]) => `${l}@${d}.${tld}`)
  const phrase = fc.array(fc.oneof(atom, fc.constantFrom('@', ',', 'x@y.z', '<', '(', ')')), { minLength: 1, maxLength: 4 }).map((w) => w.join(' '))
  const mailbox = fc.oneof(
    addr,
    fc.tuple(phrase, addr).map(([n, a]) => `"${n.replace(/["\\]/g, '')}" <${a}>`),
    fc.tuple(atom, addr).map(([n, a]) => `${n} <${a}>`),
    fc.tuple(addr, phrase).map(([a, c]) => `${a} (${c.replace(/[()\\]/g, '')})`),
  )
  const value = fc.oneof(
    { weight: 3, arbitrary: mailbox },
    fc.tuple(mailbox, mailbox).map(([a, b]) => `${a}, ${b}`),
    fc.tuple(atom, mailbox, mailbox).map(([g, a, b]) => `${g}: ${a}, ${b};`),
  )
  const values = fc.sample(value, { numRuns: 1500, seed: 5322 })
  const python = pythonEach<string, string[]>(
    'from email import message_from_string, policy\n' +
      'def judge(v):\n    m = message_from_string("From: " + v + "\\n\\n", policy=policy.default)\n' +
      '    return [a.addr_spec.lower() for a in m["from"].addresses if a.addr_spec]',
    values,
  )
  const problems: string[] = []
  let accepted = 0
  values.forEach((v, i) => {
    const ours = box(v)
    const theirs = python[i]!
    const distinct = new Set(theirs)
    if (typeof ours === 'string') {
      accepted++
      if (distinct.size !== 1 || !distinct.has(ours)) problems.push(`${v}: box ${ours}, Python ${theirs.join(' ')}`)
    } else if (distinct.size > 1 && ours.refused !== 'EMESSAGE_AMBIGUOUS') problems.push(`${v}: Python sees ${theirs.join(' ')}, box ${ours.refused}`)
  })
  t.ok(accepted > 300, `${accepted} of ${values.length} accepted`)
  t.same(problems.slice(0, 5), [], 'every accepted From is the one mailbox Python reads; every two-mailbox From is refused')
})
