import type { Clock } from '../../hal/clock.ts'
import { ByteRateLimiter } from '../../hal/net/throttle.ts'
import type { Component } from '../component.ts'
import type { Config } from '../config/load.ts'
import type { EventSink } from '../events.ts'
import type { Logger } from '../log.ts'
import { ReadReceipts, type ReceiptRule } from '../return-path/receipts.ts'
import type { ReturnPathTokens } from '../return-path/verp.ts'
import type { Submitted } from '../pipeline/handoff.ts'
import type { Spool } from '../spool/spool.ts'
import type { FinalOutcome, SpoolEntry } from '../spool/types.ts'
import { Percentiles } from '../percentiles.ts'
import { boxError } from '../box-errors.ts'
import { Notices, noticeIdFor, type ReturnedBounce } from './notices.ts'
import { EgressPool, installKernelShaping } from './egress.ts'
import { ConnectionPool } from './pool.ts'
import { systemResolver, type Resolver } from './routes.ts'
import { Transport } from './transport.ts'
import { recoverAcceptances, replayUnconfirmed, type RecoveryDeps } from './recovery.ts'
import { sendJournalled, tally, type Settle } from './attempt.ts'

/**
 * The delivery engine (M2, M3, M7, M8, S1): takes due mail from the spool, routes it (static routes, MX), spreads connections over the
 * egress addresses, reuses connections, shapes every outbound byte to one shared budget, retries with back-off, and brings each mail to a
 * final state — delivered, bounced or expired — which shreds it from the spool.
 */
export class DeliveryEngine implements Component {
  readonly name = 'delivery'
  readonly limiter: ByteRateLimiter
  readonly egress: EgressPool
  #config: Config
  readonly #log: Logger
  readonly #spool: Spool
  readonly #events: EventSink
  readonly #clock: Clock
  readonly #transport: Transport
  readonly #pool: ConnectionPool
  readonly #tasks = new Set<Promise<void>>()
  #timer: NodeJS.Timeout | undefined
  #stopping = false
  #stopDeadline = 0
  readonly counts = { delivered: 0, deferred: 0, bounced: 0, expired: 0, removed: 0, unread: 0, read: 0 }
  /** Milliseconds from a receiver's 250 to the outcome being in the journal (the window for a duplicate after a crash). */
  readonly journalLag = new Percentiles(4096)
  readonly #returnPath: ReturnPathTokens | undefined
  readonly #receipts: ReadReceipts
  readonly #notices: Notices
  /** Awaiting statements whose read came while they were in flight for their second send. */
  readonly #readInFlight = new Set<string>()
  /** What counts as read for each statement of a read-receipt class delivery has looked at (until it ends). */
  readonly #evidence = new Map<string, ReceiptRule['readEvidence']>()
  /** What a start needs to make good what a crash kept from the trail (#33; recovery.ts). */
  readonly #recovery: RecoveryDeps

  constructor(deps: {
    config: Config
    log: Logger
    spool: Spool
    events: EventSink
    clock: Clock
    resolver?: Resolver
    returnPath?: ReturnPathTokens
    trail?: RecoveryDeps['trail']
  }) {
    this.#config = deps.config
    this.#returnPath = deps.returnPath
    this.#receipts = new ReadReceipts(deps.config)
    this.#log = deps.log.child({ component: 'delivery' })
    this.#spool = deps.spool
    this.#events = deps.events
    this.#clock = deps.clock
    this.#notices = new Notices({ config: deps.config, log: this.#log, spool: deps.spool, clock: deps.clock })
    this.#recovery = { spool: deps.spool, events: deps.events, log: this.#log, notices: this.#notices, trail: deps.trail }
    const d = deps.config.delivery
    this.limiter = ByteRateLimiter.egressBudget(d.bandwidthBitsPerSecond / 8, d.burstBytes)
    this.egress = new EgressPool(deps.config, deps.clock)
    this.#pool = new ConnectionPool(deps.config)
    this.#transport = new Transport({
      config: deps.config,
      log: this.#log,
      events: deps.events,
      resolver: deps.resolver ?? systemResolver,
      pool: this.#pool,
      egress: this.egress,
      limiter: this.limiter,
    })
  }

  async start(): Promise<void> {
    // #33: before anything is sent, every spooled statement's acceptance and what an interrupted attempt
    // did are in the trail, and the firm has been told.
    await recoverAcceptances(this.#recovery)
    await replayUnconfirmed(this.#recovery)
    if (!this.#config.delivery.enabled) return void this.#log.warn('delivery is disabled: mail stays queued')
    const d = this.#config.delivery
    await installKernelShaping(d, this.#log)
    this.#log.info({ egress: d.egress.map((e) => e.address), bitsPerSecond: d.bandwidthBitsPerSecond, routes: d.routes.length }, 'delivery started')
    const loop = () => {
      if (this.#stopping) return
      this.tick()
      this.#timer = setTimeout(loop, 100)
    }
    loop()
  }

  /**
   * Stops claiming mail, lets attempts in progress finish for up to shutdown.graceMs, then closes the connections
   * still busy (a receiver may take 10 minutes to answer DATA): those attempts end deferred and are retried after
   * the restart — at least once, never lost.
   */
  beginStop(): void {
    if (this.#stopping) return
    this.#stopping = true
    this.#stopDeadline = Date.now() + this.#config.shutdown.graceMs
    this.#pool.beginStop()
    clearTimeout(this.#timer)
  }

  async stop(): Promise<void> {
    this.beginStop()
    await this.#pool.settle(Promise.allSettled([...this.#tasks]), this.#stopDeadline, (connections) =>
      this.#log.warn(
        { connections, attempts: this.#tasks.size },
        'shutdown grace over: closing connections still delivering; their mail is retried after the restart',
      ),
    )
    await this.#pool.quitIdle()
  }

  /** Claims due mail up to what the connection limits can carry and starts delivering it. */
  tick(): void {
    const room = this.#config.delivery.maxConnections * 2 - this.#tasks.size
    if (room <= 0) return
    for (const entry of this.#spool.due(this.#clock.now(), room)) {
      const task = this.#deliver(entry).catch((err: unknown) => this.#failed(entry, err))
      this.#tasks.add(task)
      // A finished task makes room: claim the next due mail now rather than at the next
      // timer tick, or a fast link idles between ticks.
      void task.finally(() => {
        this.#tasks.delete(task)
        if (!this.#stopping) this.tick()
      })
    }
  }

  /**
   * An attempt that broke off inside the box (a journal write failed, the disk is full): the mail must not stay "in flight" in memory, where
   * nothing would pick it up before a restart. Deferred a minute; if even that cannot be written, put back in memory only (the journal has its last state).
   */
  async #failed(entry: SpoolEntry, err: unknown): Promise<void> {
    const reason = `internal error: ${(err as Error).message}`
    this.#log.error({ id: entry.id, err: (err as Error).message }, 'delivery attempt failed inside the box; retrying in a minute')
    if (!this.#spool.entry(entry.id)) return
    await this.#spool.defer(entry.id, this.#clock.now() + 60_000, reason).catch((e: Error) => {
      this.#log.error({ id: entry.id, err: e.message }, 'cannot journal the retry either; it stays queued in memory')
      this.#spool.requeueInMemory(entry.id, this.#clock.now() + 60_000)
    })
  }

  /** The wait before the next attempt after `attempts` (`delivery.retrySeconds`, its last step repeated). */
  #retryAfter(attempts: number): number {
    const schedule = this.#config.delivery.retrySeconds
    return schedule[Math.min(attempts, schedule.length - 1)]! * 1000
  }

  /**
   * An operator takes a held mail out of the queue (a statement that must not go out after all): the firm gets the same notice as for a
   * bounce, naming who removed it and why, then the record is shredded like any final mail. Only a held mail: no attempt runs on it.
   */
  async remove(id: string, who: string, reason: string): Promise<void> {
    const entry = this.#spool.entry(id)
    if (entry?.state !== 'held') throw boxError('ECONTROL_REFUSED', `${id} is not held`)
    const mail = await this.#spool.read(id)
    const done = this.#spool.recipientsDone(id)
    const why = `removed by operator ${who}: ${reason}`
    const pending = mail.envelope.rcptTo.filter((_, i) => !done?.delivered.includes(i) && !done?.bounced.includes(i))
    await this.#notices.forMail(
      mail,
      'removed',
      pending.map((rcpt) => ({ rcpt, reason: why })),
    )
    await this.#finish(id, 'removed', why)
    this.counts.removed++
  }

  /**
   * M11: the read of an awaiting statement (an MDN "displayed", a confirmation, an open — as
   * its class's `readEvidence` says): the statement's life ends (`read`) and its record is
   * shredded (M10). Evidence of another kind, or for a statement not awaiting, changes nothing.
   */
  async read(id: string, evidence: ReceiptRule['readEvidence']): Promise<'read' | 'not-awaiting' | 'not-evidence'> {
    if (!this.#spool.entry(id)) return 'not-awaiting'
    // What counts as read for this statement: known since delivery looked at it, else (after a
    // restart) from its record.
    let counts = this.#evidence.get(id)
    if (counts === undefined) {
      const mail = await this.#spool.read(id).catch((err: unknown) => {
        this.#log.warn({ id, err: (err as Error).message }, 'cannot read an awaiting statement to check its read evidence')
        return undefined
      })
      counts = (mail && this.#receipts.ruleFor(mail.envelope)?.readEvidence) ?? undefined
    }
    if (counts !== evidence) return 'not-evidence'
    const entry = this.#spool.entry(id)
    if (!entry) return 'not-awaiting'
    // Being sent (the first time, or again): the read ends it as soon as that attempt is recorded.
    if (entry.state === 'inflight') {
      this.#readInFlight.add(id)
      // Journalled too when it is a second send: a crash before that attempt is recorded does not lose the read.
      await this.#spool.markRead(id)
      return 'read'
    }
    if (!this.#spool.receiptWait(id) || !this.#spool.claimAwaiting(id)) return 'not-awaiting'
    await this.#finish(id, 'read', `read receipt (${evidence})`)
    this.counts.read++
    return 'read'
  }

  /**
   * M8, M11, #30: a bounce that came back for a delivered statement. A statement awaiting its read
   * receipt (M11) ends with a hard bounce — the address will never work, a second send is pointless
   * — and waits on after a soft one (the second send may reach the mailbox; the wait decides). Any
   * other statement has left the spool's hands for this recipient: the bounce is final.
   */
  async returnedBounce(id: string, hard: boolean, reason: string): Promise<'ended' | 'awaiting' | 'final'> {
    if (!this.#spool.entry(id) || !this.#spool.receiptWait(id)) return 'final'
    if (!hard || this.#spool.entry(id)!.state === 'inflight' || !this.#spool.claimAwaiting(id)) return 'awaiting'
    await this.#finish(id, 'bounced', `bounced after delivery: ${reason}`)
    this.counts.bounced++
    return 'ended'
  }

  /** A final state (the spool's), and what delivery kept in memory about the statement goes with it. */
  async #finish(id: string, outcome: FinalOutcome, reason: string): Promise<void> {
    await this.#spool.finish(id, outcome, reason)
    this.#evidence.delete(id)
    this.#readInFlight.delete(id)
  }

  get inFlight(): number {
    return this.#tasks.size
  }

  async #deliver(entry: SpoolEntry): Promise<void> {
    const now = this.#clock.now()
    // M11: an awaiting statement whose wait is over: sent a second time, or it owes paper.
    const wait = this.#spool.receiptWait(entry.id)
    // #33: an attempt a crash interrupted: the recipients it finished are not sent again (for an
    // awaiting statement: its second send was made).
    const resumed = this.#spool.unconfirmedDone(entry.id)
    const done = resumed ?? ((!wait && this.#spool.recipientsDone(entry.id)) || { delivered: [], bounced: [] })
    const finished = new Set([...done.delivered, ...done.bounced])
    if (!wait && now - entry.created > this.#config.delivery.maxAgeSeconds * 1000) return this.#expire(entry, finished)
    let mail: Submitted
    try {
      mail = await this.#spool.read(entry.id)
    } catch (err) {
      // Quarantined (bad record) or the HSM is away: in the latter case try again later.
      if (this.#spool.entry(entry.id)) await this.#spool.defer(entry.id, now + 60_000, `cannot read record: ${(err as Error).message}`)
      return
    }
    const env = mail.envelope
    const kind = env.kind ?? 'statement'
    const rule = this.#receipts.ruleFor(env)
    if (rule) this.#evidence.set(env.id, rule.readEvidence)
    if (wait?.read) {
      await this.#finish(env.id, 'read', 'read receipt while it was being sent again')
      this.counts.read++
      return
    }
    if (wait && !resumed) {
      const step = rule ? this.#receipts.step(rule, wait, now) : ({ step: 'unread', reason: 'its class no longer asks for a read receipt' } as const)
      if (step.step === 'unread') {
        await this.#finish(env.id, 'unread', step.reason)
        this.counts.unread++
        return
      }
    }
    // M8: a statement from a domain with a return path goes out with a VERP sender, one
    // transaction per recipient, so that a bounce names its statement and recipient.
    const returnDomain = kind === 'statement' ? this.#receipts.returnDomain(env) : undefined
    if (returnDomain && this.#returnPath) {
      try {
        await this.#returnPath.keys()
      } catch (err) {
        await this.#spool.defer(entry.id, now + 60_000, `return-path key not available (HSM): ${(err as Error).message}`)
        return
      }
    }
    const verp = returnDomain && this.#returnPath ? { domain: returnDomain, tokens: this.#returnPath } : undefined
    // Transactions are numbered within the attempt, after those an interrupted run of it journalled.
    const attempt = entry.attempts + 1
    const { results, noticeKey } = await sendJournalled({
      transport: this.#transport,
      spool: this.#spool,
      trailSeq: () => this.#recovery.trail?.head.seq ?? 0,
      journalLag: this.journalLag,
      mail,
      finished,
      done,
      verp,
      attempt,
    })
    const { delivered, bounced, bouncedNow, deferredReply, lastReply } = tally(env.rcptTo, results, done)
    // DSNs first, as above: never a final state whose notice could still be lost. Its id is the
    // attempt's, so the replay after a crash (#33) knows whether it was queued.
    if (bouncedNow.length) await this.#notices.forMail(mail, 'bounced', bouncedNow, noticeIdFor(env.id, noticeKey ?? `${attempt}`))
    // The attempts are in the audit trail before the journal says so (the ledger is made from the trail).
    await this.#events.durable?.()
    await this.#settle({ entry, env, wait, resumed, rule, delivered, bounced, bouncedNow, deferredReply, lastReply })
  }

  /** M8: a mail out of time: the firm's notice names the recipients still open, then it ends expired. */
  async #expire(entry: SpoolEntry, finished: ReadonlySet<number>): Promise<void> {
    const mail = await this.#spool.read(entry.id).catch(() => undefined)
    const reason = `no successful delivery within ${Math.round(this.#config.delivery.maxAgeSeconds / 3600)} hours`
    // The firm's notice is queued (durably) before the mail's end is: a crash between the two
    // repeats the notice rather than losing it.
    if (mail)
      await this.#notices.forMail(
        mail,
        'expired',
        mail.envelope.rcptTo.filter((_, i) => !finished.has(i)).map((rcpt) => ({ rcpt, reason })),
      )
    await this.#finish(entry.id, 'expired', `undelivered after ${this.#config.delivery.maxAgeSeconds} s`)
    this.counts.expired++
  }

  /** The attempt's one outcome for the mail (M8, M11): kept for its read receipt, read, deferred, bounced or delivered. */
  async #settle(a: Settle): Promise<void> {
    const { entry, env, wait, resumed, rule, delivered, bounced, bouncedNow, deferredReply, lastReply } = a
    const bouncedThisAttempt = bouncedNow.length + (wait ? (resumed?.bounced.length ?? 0) : 0)
    if (wait && bouncedThisAttempt > 0 && delivered.length === 0) {
      // M11: the second send bounced. The first was delivered and never read: paper is owed for that.
      await this.#finish(env.id, 'unread', `no read receipt, and the second send bounced: ${bouncedNow[0]?.reason ?? 'before a restart'}`)
      this.counts.unread++
      return
    }
    if (rule && bounced.length === 0) {
      // M11: delivered (or, for a second send, tried): kept for its read receipt, not shredded yet.
      const sends = (wait?.sends ?? 0) + (delivered.length ? 1 : 0)
      const firstSentAt = wait?.firstSentAt ?? this.#clock.now()
      if (sends > 0) {
        // A second send that could not be made now is tried again after the retry wait, while the deadline allows.
        const until = delivered.length ? this.#receipts.waitUntil(rule, this.#clock.now(), sends) : this.#clock.now() + this.#retryAfter(entry.attempts)
        // A read that came during the attempt is journalled with the new state, then ends it.
        const readMeanwhile = this.#readInFlight.delete(env.id) || this.#spool.receiptWait(env.id)?.read === true
        await this.#spool.awaitReceipt(
          env.id,
          until,
          { sends, firstSentAt, ...(readMeanwhile ? { read: true } : {}) },
          this.#receipts.deadline(rule, firstSentAt),
        )
        if (delivered.length) this.counts.delivered++
        // Or during that journal write, while still in flight: claimed (awaiting → inflight, the table's move for a read) and ended.
        if ((readMeanwhile || this.#readInFlight.delete(env.id)) && this.#spool.claimAwaiting(env.id)) {
          await this.#finish(env.id, 'read', 'read receipt while it was being sent')
          this.counts.read++
        }
        return
      }
    }
    if (deferredReply !== undefined && rule && this.#readInFlight.delete(env.id)) {
      // M11: its read receipt came while this first attempt was under way, so the receiver had it,
      // whatever this attempt heard back (a reply lost or late): read, never sent again.
      await this.#finish(env.id, 'read', 'read receipt during an attempt that did not hear its 250')
      this.counts.read++
    } else if (deferredReply !== undefined) {
      await this.#spool.defer(env.id, this.#clock.now() + this.#retryAfter(entry.attempts), deferredReply, { delivered, bounced })
      this.counts.deferred++
    } else if (delivered.length === 0) {
      await this.#finish(env.id, 'bounced', bouncedNow[0]?.reason ?? lastReply)
      this.counts.bounced++
    } else {
      // Delivered to at least one recipient; any that bounced have had their own DSN.
      await this.#finish(env.id, 'delivered', lastReply)
      this.counts.delivered++
    }
  }

  /**
   * S7: an approved delivery configuration, for the next attempt (transport.ts; attempts under way finish under
   * theirs). Connection limits, the CA file and the return path wait for a start (`LIVE_KEYS`, config/schema.ts).
   */
  async reconfigure(config: Config): Promise<void> {
    this.#config = config
    this.#notices.reconfigure(config)
    await this.#transport.reconfigure(config)
  }

  /** The delivery settings the next attempt runs under (S7: an approved change shows here at once). */
  get settings(): Config['delivery'] {
    return this.#config.delivery
  }

  /** M8: a bounce that came back after the 250 (the return path), told to the firm like any other (notices.ts). */
  notifyReturned(f: ReturnedBounce): Promise<void> {
    return this.#notices.returned(f)
  }
}
