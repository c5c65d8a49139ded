import type { SecureContextOptions, TlsOptions } from 'node:tls'
import { type SMTPServerDataStream, type SMTPServerSession, SMTPServer } from 'smtp-server'
import { SmtpListener } from '../smtp-listener.ts'
import type { Clock } from '../../hal/clock.ts'
import type { Component } from '../component.ts'
import type { Config } from '../config/load.ts'
import type { BoxEvent, EventSink } from '../events.ts'
import type { Logger } from '../log.ts'
import { ClientErrorLog } from '../client-errors.ts'
import { MemoryBudget } from '../memory-budget.ts'
import { splitHostPort } from '../config/sections/fields.ts'
import { boxError } from '../box-errors.ts'
import { Classifier, rulesWith } from './classify.ts'
import { decide, failedRecipient, messageIdHint, noticeDiagnostic, type Decision } from './decide.ts'
import { parseReport, type Report } from './report.ts'
import type { ReturnPathTokens, ReturnRef } from './verp.ts'
import { RecordsPerMinute, RefusalCounts, state } from './clients.ts'
import type { BounceNotice, BounceVerdict, ReadVerdict } from './types.ts'

/** RCPT commands in one transaction answered normally; beyond, 452 4.5.3 (RFC 5321 4.5.3.1.10). */
const MAX_RCPT_COMMANDS = 100
/** A client cut off mid-report gets this long to read its 421 before the socket goes. */
const CUT_OFF_LINGER_MS = 1000
/** RCPT commands in one transaction after which the client is cut off (421): no DSN needs them. */
const CLOSE_AFTER_RCPT_COMMANDS = 1000

const reply = (code: number, text: string) => Object.assign(new Error(text), { responseCode: code })

/**
 * The return-path listener (M8, M11): the only mail the box takes from the
 * internet. It accepts RCPT only for a token address at a return-path domain
 * (`b-<token>` for bounces, `r-<token>` for read receipts) and `postmaster`
 * there (RFC 5321 4.5.1); everything else is 550 — never a relay, never
 * forwarded. No AUTH; STARTTLS offered with the box's certificate. Each
 * report is parsed, classified and committed to the audit trail (from which
 * the ledger takes it) before the 250, so a crash loses none. It never sends
 * mail in reply (no backscatter): a bad report is an SMTP answer or a count.
 */
export class ReturnPathListener implements Component {
  readonly name = 'return-path'
  readonly #config: Config
  readonly #tokens: ReturnPathTokens
  readonly #events: EventSink
  readonly #log: Logger
  readonly #clock: Clock
  readonly #classifier: Classifier
  readonly #tls: () => TlsOptions & SecureContextOptions
  readonly #onRead: (id: string, recipient: number) => Promise<ReadVerdict>
  readonly #onBounced: (b: { id: string; recipient: number; hard: boolean; reason: string }) => Promise<BounceVerdict>
  readonly #notify: (n: BounceNotice) => Promise<unknown>
  /** Bounces the firm was told of (a server that sends its DSN twice is told once); bounded. */
  readonly #notified = new Set<string>()
  #server: SMTPServer | undefined
  #address: { host: string; port: number } | undefined
  readonly #connections = new Map<string, number>()
  readonly #recordsPerMinute = new RecordsPerMinute()
  readonly #refusals: RefusalCounts
  readonly #clients: ClientErrorLog
  /** Memory for reports beyond each connection's own share (#29): shared, first come first served. */
  readonly #pool: MemoryBudget

  /**
   * `tls`: the box's certificate and TLS settings for STARTTLS (the submission listener's), read at start.
   * `onRead`: an MDN "displayed" at a read-receipt address, for the spool to act on (M11: it may end the statement).
   * `onBounced`: a DSN "failed" at a bounce address, for the spool to act on (a hard one ends a statement awaiting its read).
   * `notify`: a bounce that is final, once it is in the trail: the firm's notice (M8).
   */
  constructor(deps: {
    config: Config
    tokens: ReturnPathTokens
    events: EventSink
    log: Logger
    clock: Clock
    tls: () => TlsOptions & SecureContextOptions
    onRead?: (id: string, recipient: number) => Promise<ReadVerdict>
    onBounced?: (b: { id: string; recipient: number; hard: boolean; reason: string }) => Promise<BounceVerdict>
    notify?: (n: BounceNotice) => Promise<unknown>
  }) {
    this.#onBounced = deps.onBounced ?? (() => Promise.resolve('final'))
    this.#notify = deps.notify ?? (() => Promise.resolve())
    this.#tls = deps.tls
    this.#onRead = deps.onRead ?? (() => Promise.resolve('final'))
    this.#config = deps.config
    this.#tokens = deps.tokens
    this.#events = deps.events
    this.#log = deps.log.child({ component: 'return-path' })
    this.#clock = deps.clock
    this.#classifier = new Classifier(rulesWith(deps.config.returnPath.rulesFile || undefined))
    this.#clients = new ClientErrorLog(this.#log)
    this.#refusals = new RefusalCounts(deps.events)
    // Kept bytes are counted twice: the chunks, and their concatenation while the report is parsed.
    this.#pool = new MemoryBudget(Math.floor(deps.config.returnPath.memoryBudgetBytes / 2), 2)
  }

  /** Client faults by kind (failed handshakes, resets, timeouts …) and the memory the reports hold (status, tests). */
  get counts(): { clientErrors: Record<string, number>; memory: { used: number; peak: number; limit: number; evictions: number } } {
    const p = this.#pool
    return { clientErrors: this.#clients.counts, memory: { used: p.used, peak: p.peak, limit: p.limit, evictions: p.evictions } }
  }

  /** Whether it is listening (it is not without return-path domains, or when disabled). */
  get listening(): boolean {
    return this.#address !== undefined
  }

  /** Where it listens, once started (the port resolved when configured as 0). */
  get address(): { host: string; port: number } {
    if (!this.#address) throw boxError('EINTERNAL', 'the return-path listener is not started')
    return this.#address
  }

  get #domains(): Set<string> {
    return new Set(this.#config.returnPath.domains.map((d) => d.returnPath))
  }

  async start(): Promise<void> {
    const cfg = this.#config.returnPath
    if (!cfg.enabled || cfg.domains.length === 0) return
    await this.#tokens.keys()
    const tls = this.#tls()
    const server = new SmtpListener(
      {
        ...tls,
        secure: false,
        name: cfg.domains[0]!.returnPath,
        banner: 'Statement Gateway return path',
        size: cfg.maxMessageBytes,
        disabledCommands: ['AUTH'],
        authOptional: true,
        disableReverseLookup: true,
        hideDSN: true,
        socketTimeout: cfg.socketTimeoutMs,
        maxClients: cfg.maxClients,
        closeTimeout: this.#config.shutdown.graceMs || 1,
        logger: false,
        onConnect: (session, cb) => cb(this.#onConnect(session)),
        onClose: (session) => {
          state(session).hold?.release()
          const ip = session.remoteAddress
          if (!state(session).counted) return
          const n = (this.#connections.get(ip) ?? 1) - 1
          if (n > 0) this.#connections.set(ip, n)
          else this.#connections.delete(ip)
        },
        onMailFrom: (_address, session, cb) => {
          const st = state(session)
          st.refs = []
          st.locals.clear()
          st.rcpts = 0
          cb()
        },
        onRcptTo: (address, session, cb) => {
          this.#onRcpt(address.address, session).then(
            () => cb(),
            (err: Error) => cb(err),
          )
        },
        onData: (stream, session, cb) => this.#receive(stream, session, cb),
      },
      cfg.greetingDelayMs,
    )
    const { host, port } = splitHostPort(cfg.listen)
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    // A client's failed handshake or reset is counted and logged once a minute per address, never with a stack.
    server.on('error', (err: Error & { remoteAddress?: string; meta?: { remoteAddress?: string } }) => this.#clients.error(err))
    this.#server = server
    const a = server.server.address()
    this.#address = typeof a === 'object' && a ? { host, port: a.port } : { host, port }
    this.#log.info({ listen: `${host}:${this.#address.port}`, domains: [...this.#domains] }, 'return-path listener up')
  }

  /** DATA of a report: kept within this connection's share and the shared pool (#29), then parsed and acted on. */
  #receive(stream: SMTPServerDataStream, session: SMTPServerSession, cb: (err?: Error | null) => void): void {
    const cfg = this.#config.returnPath
    const st = state(session)
    // #29: each connection keeps its own share of the budget whatever the others do; beyond it a
    // report takes room from the shared pool as it arrives. Without room (or when an older report
    // needs it) the report is dropped and the connection cut off with 421 at once — reading the
    // rest only to refuse it cost the CPU that good reports needed. Past the size limit the rest is
    // read and dropped, and refused with 552 at its end: what is not kept costs no memory.
    const own = Math.floor(cfg.memoryBudgetBytes / 2 / cfg.maxClients)
    let chunks: Buffer[] = []
    let size = 0
    let busy = false
    const drop = () => {
      if (busy) return
      busy = true
      chunks = []
      this.#refusals.add('busy')
      this.#cutOff(session, '4.3.1 no room for the report now; closing, try again later')
    }
    stream.on('data', (c: Buffer) => {
      size += c.length
      if (busy || size > cfg.maxMessageBytes) return
      if (size > own) {
        if (!st.hold) {
          st.hold = this.#pool.admit(0)!
          st.hold.onEvict = drop
          st.hold.reading()
        }
        if (!st.hold.grow(size - own)) return drop()
      }
      chunks.push(c)
    })
    stream.on('end', () => {
      const done = (err?: Error) => {
        st.hold?.release()
        st.hold = undefined
        cb(err)
      }
      if ((stream as unknown as { sizeExceeded?: boolean }).sizeExceeded || size > cfg.maxMessageBytes) {
        this.#refusals.add('too-large')
        return done(reply(552, `5.3.4 report larger than ${cfg.maxMessageBytes} bytes`))
      }
      if (busy) return done(reply(452, '4.3.1 no room for the report now; try again later'))
      st.hold?.settle(size - own)
      this.#onData(Buffer.concat(chunks), session).then(
        () => done(),
        (err: Error & { responseCode?: number }) => {
          if (!err.responseCode) this.#log.error({ err }, 'a report could not be committed')
          done(err.responseCode ? err : reply(451, '4.3.0 the report could not be recorded; try again later'))
        },
      )
    })
  }

  async stop(): Promise<void> {
    this.#refusals.flush()
    const server = this.#server
    this.#server = undefined
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  /**
   * Ends the connection of `session` now: a 421, smtp-server's own close, and then no more reading —
   * its close goes on reading (and dropping) whatever the client still sends, which for a client
   * pushing megabytes was the CPU good reports needed (#29). The socket is the top one, TLS
   * included, so destroying it a moment later tears nothing down from below.
   */
  #cutOff(session: SMTPServerSession, text: string): void {
    for (const conn of this.#server?.connections ?? [])
      if (conn.session === session) {
        const socket = conn._socket
        conn.send(421, text)
        socket.pause()
        setTimeout(() => socket.destroy(), CUT_OFF_LINGER_MS)
        return
      }
  }

  #onConnect(session: SMTPServerSession): Error | undefined {
    const cfg = this.#config.returnPath
    const ip = session.remoteAddress
    const open = this.#connections.get(ip) ?? 0
    if (open >= cfg.maxConnectionsPerClient) {
      this.#refusals.add('too-many-connections')
      this.#clients.note(ip, 'too-many-connections', `more than ${cfg.maxConnectionsPerClient} connections from one address`)
      return reply(421, '4.7.0 too many connections from your address, try again later')
    }
    this.#connections.set(ip, open + 1)
    state(session).counted = true
    return undefined
  }

  async #onRcpt(address: string, session: SMTPServerSession): Promise<void> {
    const st = state(session)
    // #29: RCPTs cost a reply each and nothing more; no report needs hundreds.
    st.rcpts++
    if (st.rcpts > CLOSE_AFTER_RCPT_COMMANDS) throw reply(421, '4.5.3 too many recipients; closing the connection')
    if (st.rcpts > MAX_RCPT_COMMANDS) {
      this.#refusals.add('too-many-recipients')
      throw reply(452, '4.5.3 too many recipients')
    }
    const at = address.lastIndexOf('@')
    const local = address.slice(0, at)
    const domain = address.slice(at + 1).toLowerCase()
    if (at < 1 || !this.#domains.has(domain)) {
      this.#refusals.add('unknown-address')
      throw reply(550, '5.7.1 relaying denied: this server only takes reports for its return-path domains')
    }
    const key = local.toLowerCase()
    if (key === 'postmaster') return
    // The same address again is the same reference: counted once, one record (#29: 50,000 RCPTs of one
    // address were 50,000 records).
    if (st.locals.has(key)) return
    if (st.refs.length >= this.#config.returnPath.maxRecipientsPerReport) {
      this.#refusals.add('too-many-recipients')
      throw reply(452, '4.5.3 too many recipients for one report')
    }
    const ref = await this.#tokens.open(local)
    if (typeof ref === 'string') {
      this.#refusals.add(ref === 'forged' ? 'forged-token' : 'unknown-address')
      throw reply(550, '5.1.1 no such address')
    }
    st.locals.add(key)
    if (!st.refs.some((r) => r.kind === ref.kind && r.id === ref.id && r.recipient === ref.recipient)) st.refs.push(ref)
  }

  async #onData(raw: Buffer, session: SMTPServerSession): Promise<void> {
    const ip = session.remoteAddress
    const now = this.#clock.now()
    // The per-address budget counts the audit records a report makes: one per reference, one without.
    const records = Math.max(1, state(session).refs.length)
    if (!this.#recordsPerMinute.take(ip, records, this.#config.returnPath.reportsPerMinutePerClient, now)) {
      this.#refusals.add('rate-limited')
      throw reply(421, '4.7.0 too many reports from your address, try again later')
    }
    let report: Report
    try {
      report = await parseReport(raw)
    } catch (err) {
      this.#log.warn({ err }, 'a report could not be read')
      this.#refusals.add('unreadable')
      report = { kind: 'unknown', recipients: [], originalMessageId: '', from: '', subject: '' }
    }
    const refs = state(session).refs
    state(session).refs = []
    const base = { clientAddress: ip, bytes: raw.length }
    const replyText = this.#config.returnPath.replyText
    const feedback = report.kind === 'feedback' ? { feedbackType: report.feedbackType ?? '' } : {}
    // #30: only a token decides. A report without one is recorded for a person to look at (the
    // Message-ID it quotes kept as a hashed hint) and changes nothing.
    if (refs.length === 0) {
      const hint = report.originalMessageId ? { messageIdHint: messageIdHint(report.originalMessageId) } : {}
      this.#events.emit({
        type: 'returnpath.report',
        matchedBy: 'none',
        kind: report.kind,
        ...decide(report, undefined, this.#classifier, replyText),
        ...feedback,
        ...hint,
        ...base,
      })
    }
    const notices: { ref: ReturnRef; decision: Extract<Decision, { effect: 'bounce' }> }[] = []
    for (const ref of refs) {
      const decision = decide(report, ref, this.#classifier, replyText)
      // The spool acts first and the record says what it did: a crash before the record is written
      // leaves the report unanswered (the sender sends it again), never a ledger ahead of the spool.
      const spool = await this.#act(ref, decision)
      const matchedBy = ref.kind === 'b' ? ('verp' as const) : ('read-receipt-address' as const)
      this.#events.emit({
        type: 'returnpath.report',
        id: ref.id,
        recipient: ref.recipient,
        matchedBy,
        kind: report.kind,
        ...decision,
        ...(spool ? { spool } : {}),
        ...feedback,
        ...base,
      })
      if (decision.effect === 'bounce' && spool !== 'awaiting') notices.push({ ref, decision })
    }
    // Committed before the 250: a crash after it cannot lose the report.
    await this.#events.durable?.()
    const failed = failedRecipient(report)
    for (const { ref, decision } of notices) {
      const key = `${ref.id}/${ref.recipient}`
      if (this.#notified.has(key)) continue
      if (this.#notified.size >= 100_000) this.#notified.clear()
      this.#notified.add(key)
      const notice = {
        id: ref.id,
        recipient: ref.recipient,
        address: failed?.address ?? '',
        status: decision.status || failed?.status || '',
        action: 'failed' as const,
        diagnostic: failed ? noticeDiagnostic(failed, replyText) : '',
        category: decision.category,
        hard: decision.hard,
      }
      await this.#notify(notice).catch((err: unknown) => this.#log.error({ err, id: ref.id }, 'the firm could not be told of a bounce'))
    }
  }

  /** What the spool makes of a decision (#30): a read may end an awaiting statement, a hard bounce too. */
  async #act(ref: ReturnRef, d: Decision): Promise<Extract<BoxEvent, { type: 'returnpath.report' }>['spool']> {
    if (d.effect === 'read') {
      const outcome = await this.#onRead(ref.id, ref.recipient)
      this.#log.info({ id: ref.id, outcome }, 'read receipt')
      return outcome
    }
    if (d.effect === 'bounce') return this.#onBounced({ id: ref.id, recipient: ref.recipient, hard: d.hard, reason: `${d.status} ${d.category}`.trim() })
    return undefined
  }
}
