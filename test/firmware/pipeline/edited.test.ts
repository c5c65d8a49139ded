import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import t from 'tap'
import { GatewayError } from '../../../firmware/errors.ts'
import { parseMessage } from '../../../firmware/mime/tree.ts'
import { edited, factsFor } from '../../../firmware/pipeline/edited.ts'
import { factsOf } from '../../../firmware/pipeline/facts.ts'
import type { Submitted } from '../../../firmware/pipeline/handoff.ts'

const envelope = {
  id: 'Q1',
  mailFrom: 's@bank.example',
  rcptTo: ['c@example.net'],
  account: undefined,
  clientAddress: '127.0.0.1',
  tls: undefined,
  receivedAt: 0,
}
const raw = Buffer.from(
  'From: Statements <S@Bank.example>\r\nX-Statement-ID: S-1\r\nAuto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n' +
    'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n',
)

/** Counts the whole readings of a message while `fn` runs (the channel parseMessage tells). */
function parses(fn: () => void): number {
  let n = 0
  const count = () => n++
  subscribe('statement-gateway:mime.parse', count)
  try {
    fn()
  } finally {
    unsubscribe('statement-gateway:mime.parse', count)
  }
  return n
}

t.test('#34 parse once: carried facts are used as they are; a bare message is read once', async (t) => {
  const facts = factsOf(raw, parseMessage(raw))
  t.equal(facts.autoSubmitted, 'auto-generated', 'Auto-Submitted read at submission (M8 loop guard)')
  t.equal(facts.isReport, true, 'a multipart/report is known as one before it is signed')
  t.equal(facts.from, 's@bank.example')
  const mail: Submitted = { envelope, message: raw, facts }
  t.equal(
    parses(() => t.equal(factsFor(mail), facts)),
    0,
    'no reading for a mail that carries its facts',
  )
  t.equal(
    parses(() => factsFor({ envelope, message: raw })),
    1,
    'one reading for a mail without them',
  )
  t.equal(
    parses(() => factsFor({ envelope, message: Buffer.concat([Buffer.from('X-A: 1\r\n'), raw]), facts })),
    1,
    'facts of other bytes are not trusted',
  )
})

t.test('an edit moves the facts with the bytes, without reading the mail again', async (t) => {
  const facts = factsOf(raw, parseMessage(raw))
  const id = facts.tree.headers.find((h) => h.key === 'x-statement-id')!
  let out: Submitted | undefined
  const n = parses(() => {
    out = edited({ envelope, message: raw, facts }, [
      { start: id.start, end: id.end, bytes: Buffer.from('X-Statement-ID: S-2\r\n') },
      { start: 0, end: 0, bytes: Buffer.from('Disposition-Notification-To: <r-x@rp.bank.example>\r\n') },
    ])
  })
  t.equal(n, 0)
  t.equal(out!.facts!.statementId, 'S-2', 'the facts read from the moved tree')
  t.equal(out!.facts!.bytes, out!.message.length)
  t.same(out!.facts, factsOf(out!.message, parseMessage(out!.message)), 'the same facts a fresh reading gives')
})

t.test('a message the box refuses: the GatewayError its structure earns', async (t) => {
  const bad = Buffer.from('From: a@b\r\nFrom: c@d\r\n\r\nx\r\n')
  const err = (() => {
    try {
      factsFor({ envelope, message: bad })
    } catch (e) {
      return e
    }
  })()
  t.ok(err instanceof GatewayError, 'a GatewayError (its SMTP reply)')
  t.equal((err as GatewayError).code, 'EMESSAGE_AMBIGUOUS')
})
