import { recordsAfter, recordsFromDay } from '../audit/replay.ts'
import type { EventSink } from '../events.ts'
import type { Logger } from '../log.ts'
import type { Submitted } from '../pipeline/handoff.ts'
import type { Spool } from '../spool/spool.ts'
import { noticeIdFor, type Notices } from './notices.ts'

/**
 * What a start does before the first delivery after a crash (#33, S6, M9): the trail gets
 * what the crash kept from it — an acceptance, a recipient's outcome — exactly once, and
 * the firm its notices. The delivery engine runs both before its loop (engine.ts `start`).
 */
export interface RecoveryDeps {
  spool: Spool
  events: EventSink
  log: Logger
  notices: Notices
  trail: { dir: string; head: { seq: number }; lastTimeAtStart: number } | undefined
}

/** How far before the trail's last record a start looks for spooled mails the trail never saw accepted. */
const RECOVERY_LOOKBACK_MS = 60_000

/**
 * S6, M9, #33: a mail is durable in the spool a moment before the trail's group with its
 * acceptance is written (`audit.flushMs`); a crash between leaves a statement the spool will
 * deliver and the trail never saw accepted (the ledger would never count it). The mails
 * received shortly before the trail's last record are looked up in the trail from that day
 * on; one whose acceptance is missing has it written now, marked `recovered` (its client
 * may not have heard the 250, and may send it again).
 */
export async function recoverAcceptances(d: RecoveryDeps): Promise<void> {
  if (!d.trail) return
  const since = d.trail.lastTimeAtStart - RECOVERY_LOOKBACK_MS
  const candidates = d.spool.createdSince(since)
  if (!candidates.length) return
  const recorded = new Set<string>()
  const day = new Date(Math.max(0, since)).toISOString().slice(0, 10)
  for await (const { line } of recordsFromDay(d.trail.dir, day)) {
    if (!line.includes('"submission.accepted"')) continue
    const r = JSON.parse(line) as { type: string; id?: string }
    if (r.type === 'submission.accepted' && r.id) recorded.add(r.id)
  }
  let recovered = 0
  for (const e of candidates) {
    if (recorded.has(e.id)) continue
    let mail: Submitted
    try {
      mail = await d.spool.read(e.id)
    } catch (err) {
      d.log.error({ id: e.id, err: (err as Error).message }, 'cannot read a mail to record its lost acceptance; tried again at the next start')
      continue
    }
    const env = mail.envelope
    if ((env.kind ?? 'statement') !== 'statement') continue
    d.events.emit({
      type: 'submission.accepted',
      id: e.id,
      account: env.account,
      clientAddress: env.clientAddress,
      tls: env.tls?.protocol,
      recipients: env.rcptTo,
      bytes: mail.message.length,
      recovered: true,
    })
    recovered++
  }
  if (!recovered) return
  await d.events.durable?.()
  d.log.warn({ mails: recovered }, 'spooled mails whose acceptance a crash kept from the trail: recorded now (their clients may not have heard 250)')
}

/**
 * #33: after a crash, the transactions the journal has and no state line confirmed. Each one's
 * delivery record is looked for in the trail (after the record that was last when it was
 * journalled) and written now if the crash lost it (`replayed`); a bounce's notice to the firm
 * is queued if it is neither in the queue nor in the trail. Then the trail is made durable;
 * the mail's next attempt sends to the other recipients only, and its state line confirms them.
 */
export async function replayUnconfirmed(d: RecoveryDeps): Promise<void> {
  const pending = d.spool.unconfirmed()
  if (!pending.length) return
  const recorded = new Map<string, number>()
  const queued = new Set<string>()
  if (d.trail) {
    const after = Math.min(...pending.flatMap(([, notes]) => notes.map((n) => n.replay.trailSeq)))
    for await (const { line } of recordsAfter(d.trail.dir, after)) {
      if (!line.includes('"delivery.attempt"') && !line.includes('"spool.queued"')) continue
      const r = JSON.parse(line) as { type: string; id?: string; transaction?: string; outcome?: string; recipients?: unknown[] }
      if (r.type === 'spool.queued' && r.id) queued.add(r.id)
      else if (r.type === 'delivery.attempt' && r.transaction) {
        const key = `${r.id} ${r.transaction} ${r.outcome}`
        recorded.set(key, (recorded.get(key) ?? 0) + (r.recipients?.length ?? 0))
      }
    }
  }
  let events = 0
  let notices = 0
  for (const [id, notes] of pending) {
    let mail: Submitted
    try {
      mail = await d.spool.read(id)
    } catch (err) {
      d.log.error({ id, err: (err as Error).message }, 'cannot read a mail whose interrupted attempt needs recording; tried again at the next start')
      continue
    }
    const env = mail.envelope
    const bounced: { rcpt: string; reason: string }[] = []
    let noticeKey: string | undefined
    for (const n of notes)
      for (const r of n.replay.results) {
        if (r.outcome === 'bounced') {
          noticeKey ??= n.transaction
          bounced.push(...r.recipients.map((i) => ({ rcpt: env.rcptTo[i]!, reason: r.reply })))
        }
        if ((recorded.get(`${id} ${n.transaction} ${r.outcome}`) ?? 0) >= r.recipients.length) continue
        d.events.emit({
          type: 'delivery.attempt',
          id,
          kind: env.kind ?? 'statement',
          outcome: r.outcome,
          recipients: r.recipients.map((i) => env.rcptTo[i]!),
          mx: n.replay.mx,
          sourceIp: n.replay.sourceIp,
          reply: r.reply,
          tls: n.replay.tls,
          transaction: n.transaction,
          replayed: true,
        })
        events++
      }
    const noticeId = noticeKey && noticeIdFor(id, noticeKey)
    if (noticeId && !d.spool.entry(noticeId) && !queued.has(noticeId)) {
      await d.notices.forMail(mail, 'bounced', bounced, noticeId)
      notices++
    }
  }
  await d.events.durable?.()
  d.log.warn(
    { mails: pending.length, recorded: events, notices },
    'attempts a crash interrupted: their recipients are not sent again; what the trail had lost is recorded now',
  )
}
