import type { Submitted } from '../pipeline/handoff.ts'
import type { Percentiles } from '../percentiles.ts'
import type { ReturnPathTokens } from '../return-path/verp.ts'
import { crashPoint } from '../faults.ts'
import { redactText } from '../pii/redact.ts'
import type { Spool } from '../spool/spool.ts'
import type { ReceiptWait, RecipientsDone, SpoolEntry } from '../spool/types.ts'
import type { ReceiptRule } from '../return-path/receipts.ts'
import { transactions, type Outcome, type Transport } from './transport.ts'

/** Each recipient's answer in one attempt, by address. */
export type Results = Map<string, { status: Outcome['status']; reply: string }>

/**
 * One attempt's transactions (engine.ts `#deliver`), only to recipients not yet final: a retry
 * never sends a customer the same statement twice. #33, M8: journal first — each transaction's
 * answer is durable (`spool.progress`) before the mail's next transaction, its notices, the
 * trail or its final state, so a crash from then on does not send those recipients again.
 * Transactions are numbered `<attempt>.<n>`, after those an interrupted run of it journalled;
 * `noticeKey` is the first that bounced (the firm's notice is named after it).
 */
export async function sendJournalled(a: {
  transport: Transport
  spool: Spool
  trailSeq: () => number
  journalLag: Percentiles
  mail: Submitted
  finished: ReadonlySet<number>
  done: RecipientsDone
  verp: { domain: string; tokens: ReturnPathTokens } | undefined
  attempt: number
}): Promise<{ results: Results; noticeKey: string | undefined }> {
  const env = a.mail.envelope
  const kind = env.kind ?? 'statement'
  const results: Results = new Map()
  const finalSoFar = { delivered: [...a.done.delivered], bounced: [...a.done.bounced] }
  let n = a.spool.unconfirmedCount(env.id)
  let noticeKey: string | undefined
  for (const { domain, mailFrom, rcpts } of transactions(env, a.finished, a.verp)) {
    const transaction = `${a.attempt}.${++n}`
    const o = await a.transport.toDomain(env.id, kind, domain, mailFrom, rcpts, a.mail.message, transaction)
    const finals = {
      delivered: { outcome: 'delivered' as const, recipients: [] as number[], reply: '' },
      bounced: { outcome: 'bounced' as const, recipients: [] as number[], reply: '' },
    }
    for (const r of rcpts) {
      const res = o.perRecipient?.get(r) ?? o
      results.set(r, res)
      if (res.status === 'deferred') continue
      const f = res.status === 'sent' ? finals.delivered : finals.bounced
      f.recipients.push(...indexesOf(env.rcptTo, r))
      f.reply = redactText(res.reply)
    }
    if (!finals.delivered.recipients.length && !finals.bounced.recipients.length) continue
    finalSoFar.delivered.push(...finals.delivered.recipients)
    finalSoFar.bounced.push(...finals.bounced.recipients)
    if (finals.bounced.recipients.length) noticeKey ??= transaction
    await a.spool.progress(env.id, finalSoFar, transaction, {
      trailSeq: a.trailSeq(),
      mx: o.mx,
      sourceIp: o.ip,
      tls: o.tls,
      results: [finals.delivered, finals.bounced].filter((f) => f.recipients.length),
    })
    if (o.at !== undefined) a.journalLag.add(performance.now() - o.at)
    crashPoint('delivery.after-progress')
  }
  return { results, noticeKey }
}

/** The attempt's outcome per recipient index, with what was final before it; the last reply and the first deferral's. */
export function tally(rcptTo: readonly string[], results: Results, done: RecipientsDone) {
  const delivered = [...done.delivered]
  const bounced = [...done.bounced]
  const bouncedNow: { rcpt: string; reason: string }[] = []
  let deferredReply: string | undefined
  let lastReply = ''
  rcptTo.forEach((r, i) => {
    const res = results.get(r)
    if (!res) return
    lastReply = res.reply
    if (res.status === 'sent') delivered.push(i)
    else if (res.status === 'bounced') {
      bounced.push(i)
      bouncedNow.push({ rcpt: r, reason: res.reply })
    } else deferredReply ??= res.reply
  })
  return { delivered, bounced, bouncedNow, deferredReply, lastReply }
}

/** Where an address is in a mail's recipient list (all places, should it be there twice). */
function indexesOf(list: readonly string[], rcpt: string): number[] {
  const out: number[] = []
  list.forEach((r, i) => r === rcpt && out.push(i))
  return out
}

/** What an attempt came to, for the one outcome it gives the mail (the engine's `#settle`). */
export interface Settle {
  entry: SpoolEntry
  env: Submitted['envelope']
  wait: ReceiptWait | undefined
  resumed: RecipientsDone | undefined
  rule: ReceiptRule | undefined
  delivered: readonly number[]
  bounced: readonly number[]
  bouncedNow: readonly { reason: string }[]
  deferredReply: string | undefined
  lastReply: string
}
