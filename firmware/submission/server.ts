import { setTimeout as sleep } from 'node:timers/promises'
import {
  SMTPServer,
  type SMTPServerAddress,
  type SMTPServerAuthentication,
  type SMTPServerAuthenticationResponse,
  type SMTPServerDataStream,
  type SMTPServerSession,
} from 'smtp-server'
import { SmtpListener } from '../smtp-listener.ts'
import { crashPoint } from '../faults.ts'
import type { Clock } from '../../hal/clock.ts'
import { AddressSet, unmapIPv4 } from '../../hal/net/cidr.ts'
import type { Component } from '../component.ts'
import type { Config } from '../config/load.ts'
import { GatewayError, toGatewayError } from '../errors.ts'
import { maskAddress, type Logger } from '../log.ts'
import type { EventSink } from '../events.ts'
import type { Handoff } from '../pipeline/handoff.ts'
import { newQueueId } from '../spool/ids.ts'
import { MemoryBudget, type Hold } from '../memory-budget.ts'
import { boxError } from '../box-errors.ts'
import { Authenticator } from './auth.ts'
import { receivedHeader } from './trace.ts'
import { readMessage } from './data.ts'
import { ConnectionGuard, type Endpoint } from './guard.ts'
import { loadTlsMaterial, serverTlsOptions } from './tls.ts'

export type { Endpoint } from './guard.ts'

interface SessionState {
  log: Logger
  /** MAIL FROM refused for lack of AUTH; a client that keeps trying is cut off. */
  unauthenticatedTries: number
  inData: boolean
  /** This transaction's room in the memory budget (declared SIZE or the first reservation, then what arrived). */
  hold: Hold | undefined
  /** The SIZE the client declared for this transaction (0: none). */
  declared: number
}

/** An unauthenticated client gets this many 530 replies before the connection is closed. */
const MAX_UNAUTHENTICATED_TRIES = 3
/** The queue id a refused mail had been given, by the error that refused it. */
const QUEUE_IDS = new WeakMap<Error, string>()
/** Refusals logged with their cause (the HSM's own error, an unexpected failure). */
const CAUSE_LOGGED = new Set<string>(['ETEMPORARY', 'EHSM_UNAVAILABLE', 'EHSM_BUSY'])

/**
 * The submission service (M1): STARTTLS and implicit-TLS listeners, AUTH only
 * over TLS, a client allowlist, optional trusted networks, a size limit, and a
 * DATA check that refuses bare line endings and NUL bytes. A mail is answered
 * 250 only after the handoff has taken it.
 */
export class SubmissionServer implements Component {
  readonly name = 'submission'
  readonly #config: Config
  readonly #log: Logger
  readonly #handoff: Handoff
  readonly #events: EventSink
  readonly #clock: Clock
  readonly #servers: SMTPServer[] = []
  readonly #sessions = new Map<string, SessionState>()
  #draining = false
  #budget: MemoryBudget | undefined
  #guard: ConnectionGuard | undefined
  #endpoints: { starttls: Endpoint; implicitTls: Endpoint } | undefined

  /** Asked at each MAIL FROM whether the box can take a mail now (e.g. the audit trail can record it); a GatewayError is the answer if not. */
  readonly #admit: () => GatewayError | undefined

  constructor(deps: { config: Config; log: Logger; handoff: Handoff; clock: Clock; events: EventSink; admit?: () => GatewayError | undefined }) {
    this.#admit = deps.admit ?? (() => undefined)
    this.#events = deps.events
    this.#config = deps.config
    this.#log = deps.log.child({ component: 'submission' })
    this.#handoff = deps.handoff
    this.#clock = deps.clock
  }

  /** Where the listeners are, once started (ports resolved when configured as 0). */
  get endpoints(): { starttls: Endpoint; implicitTls: Endpoint } {
    if (!this.#endpoints) throw boxError('EINTERNAL', 'submission server is not started')
    return this.#endpoints
  }

  #auth: Authenticator | undefined

  #allowFrom: AddressSet | undefined

  #trusted: AddressSet | undefined

  #access: Pick<Config['submission'], 'accounts' | 'allowFrom'> | undefined

  /** The accounts and client allowlist new connections and logins meet (S7: an approved change shows here at once). */
  get access(): Pick<Config['submission'], 'accounts' | 'allowFrom'> {
    return this.#access ?? { accounts: this.#config.submission.accounts, allowFrom: this.#config.submission.allowFrom }
  }

  /** S7: submission accounts and the client allowlist changed on the admin page take effect without a restart (for new connections and logins). */
  reconfigure(config: Config): void {
    this.#access = { accounts: config.submission.accounts, allowFrom: config.submission.allowFrom }
    this.#auth?.setAccounts(config.submission.accounts)
    this.#allowFrom = new AddressSet(config.submission.allowFrom)
    this.#log.info(
      { accounts: config.submission.accounts.map((a) => a.name), allowFrom: config.submission.allowFrom },
      'submission accounts and allowlist changed without a restart',
    )
  }

  async start(): Promise<void> {
    const cfg = this.#config.submission
    const tls = serverTlsOptions(loadTlsMaterial(this.#config, this.#log), cfg.tls.minVersion)
    this.#allowFrom = new AddressSet(cfg.allowFrom)
    const trusted = (this.#trusted = new AddressSet(cfg.trustedNetworks))
    this.#auth = new Authenticator(this.#config, this.#clock)
    this.#budget = new MemoryBudget(cfg.memoryBudgetBytes)
    const guard = (this.#guard = new ConnectionGuard({ perAddress: cfg.maxClientsPerAddress, authTimeoutMs: cfg.authTimeoutMs, log: this.#log }))
    if (!trusted.empty) this.#log.warn({ trustedNetworks: trusted.ranges }, 'trusted networks may submit without AUTH')
    if (cfg.accounts.length === 0 && trusted.empty) this.#log.warn('no submission accounts and no trusted networks: every submission will be refused')

    const make = (secure: boolean) =>
      new SmtpListener(
        {
          ...tls,
          secure,
          name: cfg.hostname,
          banner: 'Statement Gateway submission',
          size: cfg.maxMessageBytes,
          authMethods: ['PLAIN', 'LOGIN'],
          // AUTH is enforced in onMailFrom so that trusted networks can skip it;
          // smtp-server still refuses AUTH before TLS (538).
          authOptional: true,
          allowInsecureAuth: false,
          disableReverseLookup: true,
          maxClients: cfg.maxClients,
          socketTimeout: cfg.socketTimeoutMs,
          closeTimeout: this.#config.shutdown.graceMs || 1,
          hideENHANCEDSTATUSCODES: true, // our replies carry their own enhanced codes
          hideDSN: true,
          logger: false,
          onConnect: (session, cb) => {
            // RFC 3207 §4, RFC 4954 §4: AUTH is neither offered nor accepted before TLS, so no
            // client is invited to send its credentials in clear (smtplib does, if offered).
            if (!secure) session.disabledCommands = ['AUTH']
            this.#onConnect(session, this.#allowFrom!, cb)
          },
          onSecure: (_socket, session, cb) => {
            session.disabledCommands = undefined
            this.#state(session).log.debug({ tls: session.tlsOptions }, 'tls established')
            cb()
          },
          onAuth: (a, session, cb) => this.#onAuth(a, session, cb),
          onMailFrom: (address, session, cb) => this.#onMailFrom(address, session, cb),
          onData: (stream, session, cb) => this.#onData(stream, session, cb),
          onClose: (session) => {
            guard.closed(session.remoteAddress, session.remotePort)
            this.#sessions.get(session.id)?.hold?.release()
            this.#sessions.get(session.id)?.log.debug('connection closed')
            this.#sessions.delete(session.id)
          },
        },
        cfg.greetingDelayMs,
      )

    this.#servers.push(make(false), make(true))
    const starttls = await guard.listen(this.#servers[0]!, cfg.host, cfg.starttlsPort, true)
    const implicitTls = await guard.listen(this.#servers[1]!, cfg.host, cfg.implicitTlsPort, false)
    this.#endpoints = { starttls, implicitTls }
    this.#log.info({ starttls, implicitTls, tlsMinVersion: cfg.tls.minVersion }, 'submission listening')
  }

  /** S1, S6: a login, checked fairly (auth.ts) and recorded in the trail either way. */
  #onAuth(
    a: SMTPServerAuthentication,
    session: SMTPServerSession,
    cb: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void,
  ): void {
    const state = this.#state(session)
    const ip = unmapIPv4(session.remoteAddress)
    this.#auth!.check(a.username ?? '', a.password ?? '', ip).then(
      (outcome) => {
        // S6: every login to the box, success or failure, is in the audit trail.
        this.#events.emit({
          type: 'submission.auth',
          account: outcome.ok ? outcome.account.name : String(a.username ?? '').slice(0, 64),
          clientAddress: ip,
          outcome: outcome.ok ? 'success' : 'failure',
          ...(outcome.ok ? {} : { reason: outcome.reason }),
        })
        if (outcome.ok) {
          this.#guard!.passed(session.remoteAddress, session.remotePort)
          state.log.info({ user: outcome.account.name, method: a.method }, 'auth succeeded')
          cb(null, { user: outcome.account.name })
        } else {
          state.log.warn({ user: a.username, method: a.method, reason: outcome.reason, blockedNow: outcome.blockedNow }, 'auth failed')
          cb(outcome.error)
        }
      },
      (err: unknown) => cb(this.#fail(state, err)),
    )
  }

  /** MAIL FROM: draining, TLS, the trail's room, AUTH (or a trusted network), then room in the memory budget (#29). */
  #onMailFrom(address: SMTPServerAddress, session: SMTPServerSession, cb: (err?: Error | null) => void): void {
    const state = this.#state(session)
    const ip = unmapIPv4(session.remoteAddress)
    if (this.#draining) return cb(new GatewayError('ESHUTTING_DOWN'))
    if (this.#config.submission.requireTls && !session.secure) return cb(new GatewayError('ETLS_REQUIRED'))
    const refusal = this.#admit()
    if (refusal) return cb(refusal)
    state.hold?.release()
    state.hold = undefined
    if (!session.user && !this.#trusted!.has(ip)) {
      state.unauthenticatedTries++
      if (state.unauthenticatedTries > MAX_UNAUTHENTICATED_TRIES) {
        const err = new GatewayError('EAUTH_REQUIRED', 'authentication required; closing connection')
        return cb(Object.assign(err, { responseCode: 421 }))
      }
      return cb(new GatewayError('EAUTH_REQUIRED'))
    }
    // #29, RFC 1870: room is given at MAIL, in arrival order — for the size the client declared, or a
    // first reservation when it declared none — and a transaction that finds none is turned away
    // before it sends a byte. Data beyond the hold takes more room as it arrives (budget.ts).
    const declared = Math.min(Number((address.args || {}).SIZE ?? 0) || 0, this.#config.submission.maxMessageBytes)
    const hold = this.#budget!.admit(
      declared > 0 ? declared : Math.min(this.#config.submission.undeclaredReserveBytes, this.#config.submission.maxMessageBytes),
    )
    if (!hold) {
      state.log.warn({ used: this.#budget!.used, limit: this.#budget!.limit, declared }, 'memory budget spent: transaction refused for now')
      return cb(new GatewayError('ESUBMISSION_BUSY'))
    }
    state.hold = hold
    state.declared = declared
    if (!session.user) this.#guard!.passed(session.remoteAddress, session.remotePort) // a trusted network's client
    state.log.debug({ from: maskAddress(address.address) }, 'mail from')
    cb()
  }

  /** DATA: received, checked and handed down the chain; the 250 names its queue id, a refusal is recorded (S6). */
  #onData(stream: SMTPServerDataStream, session: SMTPServerSession, cb: (err?: Error | null, message?: string) => void): void {
    const state = this.#state(session)
    state.inData = true
    this.#receive(stream, session, state).then(
      (id) => {
        state.inData = false
        cb(null, `2.0.0 Ok: queued as ${id}`)
      },
      (err: unknown) => {
        state.inData = false
        const g = this.#fail(state, err)
        const id = err instanceof Error ? QUEUE_IDS.get(err) : undefined
        this.#events.emit({
          type: 'submission.refused',
          ...(id ? { id } : {}),
          account: typeof session.user === 'string' ? session.user : undefined,
          clientAddress: unmapIPv4(session.remoteAddress),
          code: g.code,
          reply: `${g.responseCode} ${g.message}`.slice(0, 300),
        })
        cb(g)
      },
    )
  }

  /**
   * Stops accepting connections, lets transactions in progress finish (up to
   * shutdown.graceMs), tells idle clients 421 and closes them.
   */
  async stop(): Promise<void> {
    this.#draining = true
    const closed = this.#servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))
    this.#log.info({ connections: this.#servers.reduce((n, s) => n + s.connections.size, 0) }, 'listeners closed, draining connections')
    const deadline = this.#clock.now() + this.#config.shutdown.graceMs
    for (;;) {
      let open = 0
      for (const server of this.#servers) {
        for (const conn of server.connections) {
          const state = this.#sessions.get(conn.session.id)
          const inTransaction = Boolean(conn.session.envelope?.mailFrom) || state?.inData
          if (!inTransaction || this.#clock.now() >= deadline) {
            conn.send(421, new GatewayError('ESHUTTING_DOWN').message)
            conn.close()
          } else {
            open++
          }
        }
      }
      if (open === 0) break
      await sleep(50)
    }
    await Promise.all(closed)
    this.#servers.length = 0
    this.#log.info('submission stopped')
  }

  /** What the connection guard counted: connections refused for their address's limit, auth deadlines, client errors by kind. */
  get guardCounts(): ConnectionGuard['counts'] | undefined {
    return this.#guard?.counts
  }

  /** Memory held by mail in flight, against `submission.memoryBudgetBytes`. */
  get memory(): { used: number; limit: number; peak: number; evictions: number } {
    const b = this.#budget
    return { used: b?.used ?? 0, limit: b?.limit ?? 0, peak: b?.peak ?? 0, evictions: b?.evictions ?? 0 }
  }

  async #receive(stream: SMTPServerDataStream, session: SMTPServerSession, state: SessionState): Promise<string> {
    const cfg = this.#config.submission
    const id = newQueueId()
    const at = this.#clock.now()
    const account = typeof session.user === 'string' ? session.user : undefined
    const clientAddress = unmapIPv4(session.remoteAddress)
    const trace = receivedHeader({
      helo: session.hostNameAppearsAs,
      clientAddress,
      show: cfg.traceClient,
      hostname: cfg.hostname,
      tls: session.secure,
      authenticated: account !== undefined,
      id,
      at,
    })
    const hold = state.hold
    hold?.reading()
    try {
      const message = await readMessage(stream, {
        maxBytes: cfg.maxMessageBytes,
        bareLineFeed: cfg.bareLineFeed,
        prefix: Buffer.from(trace, 'latin1'),
        sizeHint: state.declared,
        ...(hold ? { hold } : {}),
      })
      hold?.settle(message.length)
      return await this.#handOn(id, at, message, session, state, account, clientAddress)
    } catch (err) {
      // The refusal names the queue id the policy decision and the reports know the mail by.
      if (err instanceof Error) QUEUE_IDS.set(err, id)
      throw err
    } finally {
      hold?.release()
      if (state.hold === hold) state.hold = undefined
    }
  }

  async #handOn(
    id: string,
    at: number,
    message: Buffer,
    session: SMTPServerSession,
    state: SessionState,
    account: string | undefined,
    clientAddress: string,
  ): Promise<string> {
    // The message's bytes may travel to an inspection worker and back; its size is taken now.
    const bytes = message.length
    const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : ''
    const rcptTo = session.envelope.rcptTo.map((r) => r.address)
    const tls =
      session.secure && session.tlsOptions
        ? { protocol: session.tlsOptions.version, cipher: session.tlsOptions.standardName ?? session.tlsOptions.name }
        : undefined
    await this.#handoff.accept({ envelope: { id, mailFrom, rcptTo, account, clientAddress, tls, receivedAt: at }, message })
    crashPoint('submission.after-spool')
    state.log.info({ id, from: maskAddress(mailFrom), rcpt: rcptTo.map(maskAddress), bytes, user: session.user }, 'mail accepted')
    this.#events.emit({ type: 'submission.accepted', id, account, clientAddress, tls: tls?.protocol, recipients: rcptTo, bytes })
    // S6, M9: the trail records the acceptance before the client hears 250 (a crash then loses neither).
    await this.#events.durable?.()
    return id
  }

  #onConnect(session: SMTPServerSession, allowFrom: AddressSet, cb: (err?: Error | null) => void): void {
    const ip = unmapIPv4(session.remoteAddress)
    const log = this.#log.child({ cid: session.id, ip })
    this.#sessions.set(session.id, { log, unauthenticatedTries: 0, inData: false, hold: undefined, declared: 0 })
    if (this.#draining) return cb(new GatewayError('ESHUTTING_DOWN'))
    if (!allowFrom.has(ip)) {
      log.warn('client not in allowlist, refused')
      return cb(new GatewayError('ECLIENT_NOT_ALLOWED', `client address ${ip} is not allowed to submit`))
    }
    log.debug('client connected')
    cb()
  }

  #state(session: SMTPServerSession): SessionState {
    let s = this.#sessions.get(session.id)
    if (!s) {
      s = { log: this.#log.child({ cid: session.id }), unauthenticatedTries: 0, inData: false, hold: undefined, declared: 0 }
      this.#sessions.set(session.id, s)
    }
    return s
  }

  #fail(state: SessionState, err: unknown): GatewayError {
    const g = toGatewayError(err)
    const cause = CAUSE_LOGGED.has(g.code) ? String((g.cause as Error | undefined)?.message ?? g.cause) : undefined
    state.log[g.temporary ? 'warn' : 'info']({ code: g.code, cause }, 'transaction refused')
    return g
  }
}
