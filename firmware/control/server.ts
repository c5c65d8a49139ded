import { chmodSync, unlinkSync } from 'node:fs'
import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { join, resolve } from 'node:path'
import type { Component } from '../component.ts'
import type { Config } from '../config/load.ts'
import type { BoxEvent, EventSink } from '../events.ts'
import { maskAddress, type Logger } from '../log.ts'
import { statementTagsOf } from '../pipeline/facts.ts'
import type { Spool } from '../spool/spool.ts'
import { SPOOL_STATES as STATES, type SpoolEntry, type SpoolState } from '../spool/types.ts'
import { createError, boxError } from '../box-errors.ts'

export const controlSocketPath = (config: Config) => join(config.dataDir, 'control.sock')

/** One request on the control socket: a JSON line. `who` is the operator's login, as the CLI saw it. */
export interface ControlRequest {
  readonly cmd: string
  readonly args?: Record<string, unknown>
  readonly who?: string
}

export type ControlReply = { ok: true; result: unknown } | { ok: false; error: string }

/** What an admin tool did by itself (e.g. on the HSM), to be recorded. */
export interface AdminAction {
  readonly action: string
  readonly target?: string | undefined
  readonly outcome: 'ok' | 'refused'
  readonly reason?: string | undefined
  readonly detail?: string | undefined
}

/** The audit record of a tool's action, whichever way it reaches the trail. */
export function toolActionEvent(who: string, a: AdminAction): BoxEvent {
  return {
    type: 'admin.action',
    who,
    via: 'cli',
    action: a.action,
    target: a.target,
    outcome: a.outcome,
    ...(a.reason ? { reason: a.reason } : {}),
    ...(a.detail ? { detail: a.detail } : {}),
  }
}

/** A request the box refuses, with what it says to the asker (a person at the console). */
export class Refused extends createError('ECONTROL_REFUSED', 'Refused') {}

const LIST_LIMIT = 10_000
const MAX_LINE = 64 * 1024

/**
 * The operator's way into the running box: a Unix socket in the data
 * directory, mode 0600, so only the box's own user (and root) can connect —
 * the same trust boundary as the spool and the HSM PIN files. JSON lines,
 * one reply per request. Every request, read-only ones included, is an
 * `admin.action` event in the audit trail, with the login the client claims
 * (the socket's permissions are what authenticates).
 *
 * Commands: box.status, queue.summary, queue.list {state?, limit?, offset?},
 * queue.show {id}, queue.hold {id}, queue.release {id}, queue.retry {id},
 * queue.remove {id, reason} (held mail only);
 * admin.record {action, target?, outcome, reason?, detail?} from tools.
 */
export class ControlServer implements Component {
  readonly name = 'control'
  readonly #config: Config
  readonly #log: Logger
  readonly #spool: Spool
  readonly #events: EventSink
  readonly #status: ((fresh?: boolean) => Promise<unknown>) | undefined
  /** Console actions of other components (#31: the accounts'), added once they exist. */
  readonly #actions: Record<string, (args: Record<string, unknown>, who: string) => Promise<unknown>> = {}
  readonly #remove: ((id: string, who: string, reason: string) => Promise<void>) | undefined
  readonly #views: Record<string, () => Promise<unknown>>
  #server: Server | undefined
  readonly #sockets = new Set<Socket>()

  /**
   * `status`: what `box.status` reports (the daemon assembles it from its components);
   * `remove`: takes a held mail out of the queue with a notice to the firm (delivery's).
   */
  constructor(deps: {
    config: Config
    log: Logger
    spool: Spool
    events: EventSink
    status?: (fresh?: boolean) => Promise<unknown>
    remove?: (id: string, who: string, reason: string) => Promise<void>
    /** Further read-only views by command name (e.g. `delivery.journal-lag`). */
    views?: Record<string, () => Promise<unknown>>
  }) {
    this.#views = deps.views ?? {}
    this.#config = deps.config
    this.#log = deps.log.child({ component: 'control' })
    this.#spool = deps.spool
    this.#events = deps.events
    this.#status = deps.status
    this.#remove = deps.remove
  }

  get path(): string {
    return controlSocketPath(this.#config)
  }

  /**
   * Console actions by command name, for the components made after the control socket (#31: the
   * admin accounts' `account.enrol`, `account.unlock`); only root on the box reaches the socket.
   */
  addActions(actions: Record<string, (args: Record<string, unknown>, who: string) => Promise<unknown>>): void {
    Object.assign(this.#actions, actions)
  }

  async start(): Promise<void> {
    const path = this.path
    // sockaddr_un holds 108 bytes: a deeper data directory cannot have its socket there.
    if (Buffer.byteLength(resolve(path)) > 107)
      throw boxError('ESTART_REFUSED', `the control socket path ${resolve(path)} is longer than a Unix socket allows (107 bytes); choose a shorter dataDir`)
    // A socket file left by a crash is removed; one a running box answers on is not ours to take.
    if (await answers(path)) throw boxError('ESTART_REFUSED', `another box is running on ${this.#config.dataDir} (its control socket answers)`)
    try {
      unlinkSync(path)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    const server = createServer((socket) => this.#serve(socket))
    const old = process.umask(0o177) // the socket file is created 0600, with no window where it is wider
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(path, () => resolve())
      })
    } finally {
      process.umask(old)
    }
    chmodSync(path, 0o600)
    this.#server = server
    this.#log.info({ path }, 'control socket listening')
  }

  async stop(): Promise<void> {
    const server = this.#server
    if (!server) return
    this.#server = undefined
    for (const s of this.#sockets) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  #serve(socket: Socket): void {
    this.#sockets.add(socket)
    socket.on('close', () => this.#sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    socket.setEncoding('utf8')
    let pending = ''
    let chain = Promise.resolve()
    socket.on('data', (data: string) => {
      if (socket.writableEnded) return
      pending += data
      if (pending.length > MAX_LINE) {
        pending = ''
        socket.end(`${JSON.stringify({ ok: false, error: 'request too long' })}\n`)
        socket.destroySoon()
        return
      }
      const lines = pending.split('\n')
      pending = lines.pop()!
      for (const line of lines) {
        if (!line.trim()) continue
        // One at a time per connection, so replies come back in order.
        chain = chain.then(async () => {
          const reply = await this.handle(line)
          if (!socket.destroyed) socket.write(`${JSON.stringify(reply)}\n`)
        })
      }
    })
  }

  /** Parses and carries out one request line; every outcome is audited. */
  async handle(line: string): Promise<ControlReply> {
    let req: ControlRequest
    try {
      req = JSON.parse(line) as ControlRequest
      if (typeof req.cmd !== 'string') throw boxError('ECONTROL_REFUSED', 'no cmd')
    } catch {
      return { ok: false, error: 'not a JSON request with a "cmd"' }
    }
    const who = typeof req.who === 'string' && /^[\w.@-]{1,64}$/.test(req.who) ? req.who : 'unknown'
    const args = req.args ?? {}
    if (req.cmd === 'admin.record') return this.#record(who, args)
    return this.request({ cmd: req.cmd, args, who }, 'control-socket')
  }

  /**
   * One queue or status request, whoever asks: the control socket's CLI, or a
   * person on the admin page (who the page authenticated). The one queue
   * service of the box; every outcome is an audit event naming the channel.
   */
  async request(req: ControlRequest & { who: string }, via: 'control-socket' | 'admin-page'): Promise<ControlReply> {
    const { who } = req
    const args = req.args ?? {}
    const target = typeof args.id === 'string' ? args.id : undefined
    const on = target && req.cmd.startsWith('queue.') ? { id: target } : {}
    try {
      const result = await this.#run(req.cmd, args, who)
      this.#events.emit({ type: 'admin.action', who, via, action: req.cmd, target, ...on, outcome: 'ok' })
      return { ok: true, result }
    } catch (err) {
      const error = err instanceof Refused ? err.message : `failed: ${(err as Error).message}`
      this.#events.emit({ type: 'admin.action', who, via, action: req.cmd, target, ...on, outcome: 'refused', reason: error })
      if (!(err instanceof Refused)) this.#log.error({ cmd: req.cmd, err: (err as Error).message }, 'control request failed')
      return { ok: false, error }
    }
  }

  /**
   * The box's status for the monitoring scrape (/metrics, S11): the same answer as `box.status`, with the HSM as its
   * own health check last found it (a scrape does not probe the token again), and no audit record — a scrape every
   * 15 s is the monitoring system looking, not a person acting.
   */
  async statusForMonitoring(): Promise<Record<string, unknown>> {
    return ((await this.#status?.(false)) ?? {}) as Record<string, unknown>
  }

  /** A tool that acted by itself (the HSM CLI) reports what it did; the box records it as the trail's only writer. */
  #record(who: string, args: Record<string, unknown>): ControlReply {
    const text = (v: unknown, max: number) => (typeof v === 'string' && v.length <= max && !/[\r\n]/.test(v) ? v : undefined)
    const action = text(args.action, 64)
    const outcome = args.outcome === 'ok' || args.outcome === 'refused' ? args.outcome : undefined
    if (!action || !/^[a-z0-9.-]+$/.test(action) || !outcome)
      return { ok: false, error: 'admin.record needs an "action" (a-z, 0-9, ".", "-") and an "outcome" (ok or refused)' }
    const target = text(args.target, 200)
    const reason = text(args.reason, 500)
    const detail = text(args.detail, 500)
    this.#events.emit(toolActionEvent(who, { action, target, outcome, reason, detail }))
    return { ok: true, result: 'recorded' }
  }

  async #run(cmd: string, args: Record<string, unknown>, who: string): Promise<unknown> {
    switch (cmd) {
      case 'box.status':
        if (!this.#status) throw new Refused('no status here')
        return this.#status()
      case 'queue.summary':
        return this.#spool.stats()
      case 'queue.list': {
        const state = args.state
        if (state !== undefined && !STATES.includes(state as SpoolState))
          throw new Refused(`unknown state ${JSON.stringify(state)} (one of ${STATES.join(', ')})`)
        const limit = args.limit === undefined ? 100 : Number(args.limit)
        if (!Number.isInteger(limit) || limit < 1 || limit > LIST_LIMIT) throw new Refused(`limit must be 1–${LIST_LIMIT}`)
        const offset = args.offset === undefined ? 0 : Number(args.offset)
        if (!Number.isInteger(offset) || offset < 0) throw new Refused('offset must be a whole number from 0')
        return this.#spool.list(limit, state as SpoolState | undefined, offset).map(view)
      }
      case 'queue.show': {
        const e = this.#entry(args)
        const mail = await this.#spool.read(e.id)
        const done = this.#spool.recipientsDone(e.id)
        const tags = statementTagsOf(mail)
        return {
          ...view(e),
          kind: mail.envelope.kind ?? 'statement',
          account: mail.envelope.account,
          // Masked as in the log: the operator needs to recognise a mail, not read addresses off a screen.
          from: maskAddress(mail.envelope.mailFrom),
          recipients: mail.envelope.rcptTo.map((r, i) => ({
            address: maskAddress(r),
            state: done?.delivered.includes(i) ? 'delivered' : done?.bounced.includes(i) ? 'bounced' : 'pending',
          })),
          bytes: mail.message.length,
          receivedAt: new Date(mail.envelope.receivedAt).toISOString(),
          statementId: tags.statementId,
          statementClass: tags.statementClass,
        }
      }
      case 'queue.hold': {
        const e = this.#entry(args)
        if (e.state === 'held') throw new Refused(`${e.id} is already held`)
        if (e.state === 'inflight') throw new Refused(`${e.id} is being delivered right now; try again when the attempt ends`)
        if (e.state === 'awaiting') throw new Refused(`${e.id} was delivered and awaits its read receipt (M11); there is nothing to hold`)
        await this.#spool.hold(e.id)
        return view(this.#spool.entry(e.id)!)
      }
      case 'queue.release': {
        const e = this.#entry(args)
        if (e.state !== 'held') throw new Refused(`${e.id} is not held (it is ${e.state})`)
        await this.#spool.release(e.id)
        return view(this.#spool.entry(e.id)!)
      }
      case 'queue.retry': {
        const e = this.#entry(args)
        if (e.state !== 'deferred') throw new Refused(`${e.id} is ${e.state}; only a deferred mail can be retried now`)
        await this.#spool.retryNow(e.id)
        return view(this.#spool.entry(e.id)!)
      }
      case 'queue.remove': {
        const e = this.#entry(args)
        if (e.state !== 'held') throw new Refused(`${e.id} is ${e.state}; hold it first, then remove it`)
        const reason = typeof args.reason === 'string' ? args.reason.trim() : ''
        if (!reason || reason.length > 200 || /[\x00-\x1f\x7f]/.test(reason))
          throw new Refused('a "reason" is needed (one line, up to 200 characters): the firm is told it')
        if (!this.#remove) throw new Refused('removing is not available here')
        await this.#remove(e.id, who, reason)
        return { id: e.id, state: 'removed' }
      }
      default:
        if (Object.hasOwn(this.#views, cmd)) return this.#views[cmd]!()
        if (Object.hasOwn(this.#actions, cmd)) return this.#actions[cmd]!(args, who)
        throw new Refused(`unknown command "${cmd}"`)
    }
  }

  #entry(args: Record<string, unknown>): SpoolEntry {
    const id = args.id
    if (typeof id !== 'string' || !id) throw new Refused('an "id" is needed')
    const e = this.#spool.entry(id)
    if (!e) throw new Refused(`no queued mail ${id} (delivered, bounced and expired mail is gone)`)
    return e
  }
}

function view(e: SpoolEntry) {
  return {
    id: e.id,
    state: e.state,
    attempts: e.attempts,
    created: new Date(e.created).toISOString(),
    nextAttemptAt: e.state === 'deferred' || e.state === 'queued' || e.state === 'awaiting' ? new Date(e.nextAttemptAt).toISOString() : undefined,
  }
}

/** True when a box is running on this configuration's data directory (its control socket answers). */
export function boxRunning(config: Config): Promise<boolean> {
  return answers(controlSocketPath(config))
}

/** True when something accepts connections on the socket at `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path)
    c.once('connect', () => (c.destroy(), resolve(true)))
    c.once('error', () => resolve(false))
  })
}

/** Sends requests to a running box and returns the replies in order (the CLI's side). */
export async function controlRequests(path: string, requests: readonly ControlRequest[], timeoutMs = 30_000): Promise<ControlReply[]> {
  return new Promise((resolve, reject) => {
    const c = createConnection(path)
    const replies: ControlReply[] = []
    let pending = ''
    const timer = setTimeout(() => (c.destroy(), reject(new Error(`no answer from the box within ${timeoutMs / 1000} s`))), timeoutMs)
    c.setEncoding('utf8')
    c.once('connect', () => c.write(requests.map((r) => `${JSON.stringify(r)}\n`).join('')))
    c.on('data', (d: string) => {
      pending += d
      const lines = pending.split('\n')
      pending = lines.pop()!
      for (const l of lines) if (l.trim()) replies.push(JSON.parse(l) as ControlReply)
      if (replies.length >= requests.length) {
        clearTimeout(timer)
        c.end()
        resolve(replies)
      }
    })
    c.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      reject(
        err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
          ? new Error(`the box is not running (no control socket at ${path})`)
          : err.code === 'EACCES'
            ? new Error(`not allowed to use ${path}: run as the box's user or root`)
            : err,
      )
    })
  })
}
