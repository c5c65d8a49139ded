import t from 'tap'
import { ACCOUNT } from '../../helpers/box.ts'
import { threadedDeviceErrorBurst } from '../../helpers/hsm-quirks.ts'
import { productBox } from '../../helpers/product.ts'
import { startReceiver, until } from '../../helpers/receiver.ts'
import { RawSmtp } from '../../helpers/smtp.ts'

const MAILS = 1000
/** One submission starts every this many ms: the run lasts about 50 s, the burst 30 s of it. */
const PACE_MS = 50
const BURST = { from: 10_000, to: 40_000 }
const CONNECTIONS = 16
/** Answers this long after the burst starts (ends) are judged as during (after) it: a reply can lag its signature on a busy machine. */
const SETTLE_MS = 5000

t.setTimeout(300_000) // a run paced over 50 s, then its deliveries

t.test(
  '#38, S12: a 30-second CKR_DEVICE_ERROR burst on C_Sign (an HSM throttling) during 1,000 submissions: every one answered 250 or 451, none accepted and lost, the run resumes by itself',
  async (t) => {
    const rx = await startReceiver(t)
    const burst = threadedDeviceErrorBurst(['C_Sign'])
    const { box, tls } = await productBox(
      t,
      {
        signing: { domains: [{ domain: 'bank.example', smimeKey: 'smime/bank', dkimSelector: 'sg1' }] },
        spool: { verifyOnStart: false },
        delivery: { routes: [{ domain: 'example.net', host: '127.0.0.1', port: rx.port }], retrySeconds: [1] },
      },
      { smime: true, hsmQuirks: { threadQuirks: burst.threadQuirks } },
    )
    const generation = box.hsm.hsm.token.generation
    const port = box.submission.endpoints.starttls.port
    const start = Date.now()
    const replies: { n: number; code: number; text: string; at: number }[] = []
    const problems: string[] = []
    let next = 0

    // The firm's system: connections that each submit one mail after another (STARTTLS and AUTH once
    // each), a mail due every PACE_MS; a refused mail is not sent again here, so each answer counts once.
    const sender = async () => {
      const c = await RawSmtp.open(port)
      await c.handshake(tls)
      await c.authPlain(ACCOUNT.name, ACCOUNT.password)
      try {
        for (let n = next++; n < MAILS; n = next++) {
          const due = start + n * PACE_MS
          if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()))
          for (const line of ['MAIL FROM:<statements@bank.example>', `RCPT TO:<customer${n}@example.net>`, 'DATA']) {
            const r = await c.cmd(line)
            if (r.code >= 400) problems.push(`mail ${n}: ${r.code} at ${line.split(':')[0]}`)
          }
          c.write(`From: statements@bank.example\r\nTo: customer${n}@example.net\r\nSubject: statement ${n}\r\n\r\nStatement number ${n}.\r\n.\r\n`)
          const r = await c.reply(30_000)
          replies.push({ n, code: r.code, text: r.text, at: Date.now() - start })
        }
      } finally {
        c.close()
      }
    }
    const run = Promise.all(Array.from({ length: CONNECTIONS }, sender))
    await new Promise((r) => setTimeout(r, BURST.from))
    burst.start()
    await new Promise((r) => setTimeout(r, BURST.to - BURST.from))
    burst.stop()
    await run

    t.same(problems, [], 'no command before the end of DATA refused')
    t.equal(replies.length, MAILS, `all ${MAILS} submissions answered`)
    const codes = new Map<number, number>()
    for (const r of replies) codes.set(r.code, (codes.get(r.code) ?? 0) + 1)
    t.same(
      [...codes.keys()].filter((c) => c !== 250 && c !== 451),
      [],
      `every answer 250 or 451 (${[...codes].map(([c, k]) => `${k} × ${c}`).join(', ')})`,
    )
    const texts = new Set(replies.filter((r) => r.code === 451).map((r) => r.text))
    t.same(
      [...texts],
      ['4.3.0 EHSM_BUSY the HSM is busy and refused to sign for now; the mail was not accepted, try again shortly'],
      'each 451 says why, the same words',
    )
    t.ok(burst.errors() > 0, `the token threads refused ${burst.errors()} C_Sign calls`)
    const during = replies.filter((r) => r.at > BURST.from + SETTLE_MS && r.at < BURST.to)
    t.ok(during.length > 0 && during.every((r) => r.code === 451), `while the HSM throttled, every answer was 451 (${during.length} answers)`)
    const after = replies.filter((r) => r.at > BURST.to + SETTLE_MS)
    t.ok(after.length >= 50 && after.every((r) => r.code === 250), `from 5 s after the burst, every answer 250 (${after.length} answers): resumed by itself`)
    t.equal(box.hsm.hsm.token.generation, generation, 'the same token connection throughout: no logout, no reconnect')

    // None accepted and lost: every mail answered 250 reaches the receiver.
    const accepted = new Set(replies.filter((r) => r.code === 250).map((r) => r.n))
    const delivered = () => new Set(rx.received.map((m) => Number(/Subject: statement (\d+)/.exec(m.data.toString('latin1'))?.[1])))
    await until(() => [...accepted].every((n) => delivered().has(n)), 120_000).catch(() => {})
    const lost = [...accepted].filter((n) => !delivered().has(n))
    t.same(lost, [], `all ${accepted.size} accepted mails delivered`)
    // And none refused and sent all the same: the firm's system sends a refused mail again, so that would be a duplicate.
    const refusedYetSent = [...delivered()].filter((n) => !accepted.has(n))
    t.same(refusedYetSent, [], 'no mail answered 451 was delivered')
  },
)
