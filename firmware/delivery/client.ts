import { isAscii } from 'node:buffer'
import { connect as netConnect, isIP } from 'node:net'
import { connect as tlsConnect, type SecureContext, type TLSSocket, type ConnectionOptions } from 'node:tls'
import type { Duplex } from 'node:stream'
import { ThrottledSocket, type ByteRateLimiter } from '../../hal/net/throttle.ts'
import { createError } from '../box-errors.ts'
import { dotStuff } from './dot-stuff.ts'

export interface Reply {
  code: number
  text: string
}

export class SmtpError extends createError('ESMTP_REPLY', 'SmtpError') {
  readonly reply: Reply | undefined
  readonly phase: string
  /** A connection-level failure (refused, reset, timeout) rather than a reply. */
  readonly network: boolean
  constructor(phase: string, message: string, reply?: Reply, network = false) {
    super(message)
    this.phase = phase
    this.reply = reply
    this.network = network
  }
}

export interface ClientOptions {
  host: string
  /** Name to send as TLS SNI and check the certificate against (the MX name); not used when it is an address. */
  servername: string
  port: number
  localAddress: string | undefined
  ehloName: string
  tls: 'opportunistic' | 'required' | 'none'
  /** CA bundle for verification when TLS is required (default: the system store). */
  /** Trust anchors for verified TLS, built once by the caller (parsing hundreds of CA certificates per connection is costly); absent: Node's bundled roots. */
  trust?: SecureContext | undefined
  /** Budgets every written byte passes (M3), narrowest first; empty: unshaped (the internal route). */
  limiters: readonly ByteRateLimiter[]
  timeouts: { connect: number; greeting: number; command: number; data: number }
}

/**
 * A small SMTP client (RFC 5321) for outbound delivery: STARTTLS (RFC 3207)
 * with TLS 1.2+ (S1), PIPELINING for the envelope (RFC 2920), timeouts per
 * phase, and connection reuse (RSET between messages). Every byte it writes
 * goes through the shared bandwidth limiter (M3), TLS records included.
 *
 * Kept after a spike against nodemailer's SMTPConnection (#34): that client caps
 * replies and takes a socket of ours, but after the greeting it has only an idle
 * timer, so a server trickling its reply a byte at a time holds a delivery slot
 * for ever; here each phase has a deadline (client.test.ts shows both).
 */
export class SmtpClient {
  readonly #opts: ClientOptions
  #stream: Duplex | undefined
  readonly #replies = new ReplyReader()
  #waiter: (() => void) | undefined
  #closed = false
  extensions = new Set<string>()
  tlsVersion: string | undefined
  remoteAddress: string | undefined
  /** Messages sent on this connection so far. */
  sent = 0

  constructor(opts: ClientOptions) {
    this.#opts = opts
  }

  /** The source address this connection was made from. */
  get localAddress(): string | undefined {
    return this.#opts.localAddress
  }

  get closed(): boolean {
    return this.#closed
  }

  async connect(): Promise<void> {
    const o = this.#opts
    // No Nagle: the last small segment of a message (the final dot) must not wait for the
    // peer's delayed ACK (up to 40 ms on Linux) — a stall per message on a reused connection.
    const raw = netConnect({ host: o.host, port: o.port, noDelay: true, ...(o.localAddress ? { localAddress: o.localAddress } : {}) })
    await this.#until(
      'connect',
      o.timeouts.connect,
      new Promise<void>((resolve, reject) => {
        raw.once('connect', () => resolve())
        raw.once('error', (err) => reject(new SmtpError('connect', err.message, undefined, true)))
      }),
      () => raw.destroy(),
    )
    this.remoteAddress = raw.remoteAddress
    this.#attach(new ThrottledSocket(raw, o.limiters))
    const greeting = await this.#read('greeting', o.timeouts.greeting)
    if (greeting.code !== 220) throw new SmtpError('greeting', `greeting ${greeting.code} ${greeting.text}`, greeting)
    await this.#ehlo()
    if (this.extensions.has('STARTTLS') && o.tls !== 'none') await this.#starttls()
    else if (o.tls === 'required') throw new SmtpError('starttls', 'TLS is required for this destination but the server does not offer STARTTLS')
  }

  /** Sends one message; returns the final reply. Throws SmtpError on a refusal or a broken connection. */
  /**
   * One transaction. With PIPELINING (RFC 2920) RSET, MAIL, every RCPT and
   * DATA go as one group (DATA last, as the RFC requires), so a message on a
   * reused connection costs two round trips instead of four.
   */
  async send(
    mailFrom: string,
    rcptTo: readonly string[],
    message: Buffer,
  ): Promise<{ reply: Reply; accepted: string[]; rejected: { rcpt: string; reply: Reply }[] }> {
    const o = this.#opts
    const reset = this.sent > 0
    const size = this.extensions.has('SIZE') ? ` SIZE=${message.length}` : ''
    const body8 = this.extensions.has('8BITMIME') && !isAscii(message) ? ' BODY=8BITMIME' : ''
    const commands = [...(reset ? ['RSET'] : []), `MAIL FROM:<${mailFrom}>${size}${body8}`, ...rcptTo.map((r) => `RCPT TO:<${r}>`), 'DATA']
    const replies: Reply[] = []
    if (this.extensions.has('PIPELINING')) {
      this.#write(`${commands.join('\r\n')}\r\n`)
      for (let i = 0; i < commands.length; i++) replies.push(await this.#read(i === commands.length - 1 ? 'data' : 'envelope', o.timeouts.command))
    } else {
      for (const c of commands.slice(0, -1)) {
        const r = await this.#cmd(c, o.timeouts.command)
        replies.push(r)
        if (r.code >= 400 && (c === 'RSET' || c.startsWith('MAIL'))) break
      }
    }
    if (reset) {
      const r = replies.shift()!
      if (r.code !== 250) throw new SmtpError('rset', `RSET ${r.code} ${r.text}`, r)
    }
    const mail = replies[0]!
    if (mail.code !== 250) throw new SmtpError('mail', `MAIL FROM ${mail.code} ${mail.text}`, mail)
    const accepted: string[] = []
    const rejected: { rcpt: string; reply: Reply }[] = []
    rcptTo.forEach((r, i) => {
      const reply = replies[i + 1]!
      if (reply.code === 250 || reply.code === 251) accepted.push(r)
      else rejected.push({ rcpt: r, reply })
    })
    const data = replies[rcptTo.length + 1]
    if (accepted.length === 0) {
      // A pipelined DATA after no accepted recipient should be refused (RFC 2920 §3.1); if a server
      // answers 354 anyway, end the empty message at once.
      if (data?.code === 354) {
        this.#write('.\r\n')
        await this.#read('data', o.timeouts.data).catch(() => undefined)
      }
      this.sent++
      throw new SmtpError('rcpt', `RCPT TO ${rejected[0]!.reply.code} ${rejected[0]!.reply.text}`, rejected[0]!.reply)
    }
    const go = data ?? (await this.#cmd('DATA', o.timeouts.command))
    if (go.code !== 354) throw new SmtpError('data', `DATA ${go.code} ${go.text}`, go)
    // One batch: the stream takes the pieces together (a TLS stream makes its records of them as of one write).
    this.#stream!.cork()
    for (const piece of dotStuff(message)) this.#write(piece)
    this.#stream!.uncork()
    const end = await this.#read('data', o.timeouts.data)
    this.sent++
    if (end.code !== 250) throw new SmtpError('data', `end of data ${end.code} ${end.text}`, end)
    return { reply: end, accepted, rejected }
  }

  async quit(): Promise<void> {
    if (this.#closed) return
    await this.#cmd('QUIT', 2000).catch(() => undefined)
    this.close()
  }

  close(): void {
    this.#closed = true
    this.#stream?.destroy()
  }

  async #ehlo(): Promise<void> {
    const r = await this.#cmd(`EHLO ${this.#opts.ehloName}`, this.#opts.timeouts.command)
    if (r.code !== 250) throw new SmtpError('ehlo', `EHLO ${r.code} ${r.text}`, r)
    this.extensions = new Set(
      r.text
        .split('\n')
        .slice(1)
        .map((l) => l.split(' ')[0]!.toUpperCase()),
    )
  }

  async #starttls(): Promise<void> {
    const o = this.#opts
    const r = await this.#cmd('STARTTLS', o.timeouts.command)
    if (r.code !== 220) {
      if (o.tls === 'required') throw new SmtpError('starttls', `STARTTLS ${r.code} ${r.text}`, r)
      return
    }
    const plain = this.#stream!
    plain.removeAllListeners('data')
    const options: ConnectionOptions = {
      socket: plain,
      // SNI takes names only; the identity check uses `host`, so a route to an address
      // literal is verified against the certificate's IP addresses.
      host: o.servername,
      ...(isIP(o.servername) ? {} : { servername: o.servername }),
      minVersion: 'TLSv1.2',
      // Opportunistic TLS (RFC 7435) encrypts without authenticating; "required" verifies the certificate.
      rejectUnauthorized: o.tls === 'required',
      ...(o.trust ? { secureContext: o.trust } : {}),
    }
    const secure: TLSSocket = tlsConnect(options)
    await this.#until(
      'starttls',
      o.timeouts.command,
      new Promise<void>((resolve, reject) => {
        secure.once('secureConnect', () => resolve())
        secure.once('error', (err: Error) => reject(new SmtpError('starttls', `TLS handshake failed: ${err.message}`, undefined, true)))
      }),
      () => secure.destroy(),
    )
    this.tlsVersion = secure.getProtocol() ?? undefined
    // Small TLS records: the receiver can only use a record once all of it has
    // arrived, so with many shaped connections 16 KB records would reach it in
    // lumps; 2 KB records keep what it sees close to the budget (~1 % overhead).
    // With a budget so wide that its burst holds 64 full records (≈ 800 Mbit/s
    // and over, or shaping lifted) a record is no lump, and full ones cost less (#35).
    if (o.limiters.some((l) => l.burstBytes < SHAPED_BURST_BYTES)) secure.setMaxSendFragment(2048)
    this.#attach(secure)
    await this.#ehlo()
  }

  #attach(stream: Duplex): void {
    this.#stream = stream
    this.#replies.reset()
    // No setEncoding: TLS is layered on this stream after STARTTLS and needs raw bytes.
    stream.on('data', (d: Buffer) => {
      this.#replies.push(d)
      // A server that breaks the reply limits is cut off: nothing it sends is kept.
      if (this.#replies.violation) stream.destroy()
      this.#waiter?.()
    })
    stream.on('error', () => {
      this.#closed = true
      this.#waiter?.()
    })
    stream.on('close', () => {
      this.#closed = true
      this.#waiter?.()
    })
  }

  #write(data: string | Buffer): void {
    this.#stream!.write(data)
  }

  async #cmd(line: string, timeout: number): Promise<Reply> {
    this.#write(`${line}\r\n`)
    return this.#read(line.split(' ')[0]!.toLowerCase(), timeout)
  }

  async #read(phase: string, timeout: number): Promise<Reply> {
    const deadline = Date.now() + timeout
    for (;;) {
      const reply = this.#replies.next()
      if (reply) return reply
      if (this.#replies.violation) {
        this.close()
        throw new SmtpError(phase, `protocol error from the server during ${phase}: ${this.#replies.violation}`, undefined, true)
      }
      if (this.#closed) throw new SmtpError(phase, `connection closed during ${phase}`, undefined, true)
      const left = deadline - Date.now()
      if (left <= 0) {
        this.close()
        throw new SmtpError(phase, `timeout during ${phase} after ${timeout} ms`, undefined, true)
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        this.#waiter = () => {
          clearTimeout(t)
          this.#waiter = undefined
          resolve()
        }
      })
    }
  }

  async #until(phase: string, timeout: number, p: Promise<void>, onTimeout: () => void): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        p,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            onTimeout()
            reject(new SmtpError(phase, `timeout during ${phase} after ${timeout} ms`, undefined, true))
          }, timeout)
        }),
      ])
    } finally {
      clearTimeout(timer)
    }
  }
}

/** A budget whose burst is under this many bytes shapes its TLS connections with 2 KB records (64 full 16 KB records). */
export const SHAPED_BURST_BYTES = 64 * 16 * 1024

/** RFC 5321 §4.5.3.1.5 allows 512 octets a reply line; more than this is no SMTP server. */
export const MAX_REPLY_LINE = 4096
/** Lines and octets of one multi-line reply (EHLO lists a few dozen). */
export const MAX_REPLY_LINES = 128
export const MAX_REPLY_BYTES = 64 * 1024
/** Replies received and not yet asked for: a pipelined group is a handful; more is a server talking to itself. */
export const MAX_UNREAD_REPLIES = 64

/**
 * Replies from a receiving server, read incrementally: bytes are split into
 * lines as they arrive (only the unfinished last line is kept), lines into
 * replies (`NNN-text` continues, `NNN text` ends). A receiving server is
 * hostile until proven otherwise: a line over MAX_REPLY_LINE, a reply over
 * MAX_REPLY_LINES or MAX_REPLY_BYTES, or a line that is no reply line sets
 * `violation`, and the client drops the connection — memory stays bounded
 * whatever the server sends, and each byte is looked at once.
 */
export class ReplyReader {
  #partial: Buffer[] = []
  #partialLength = 0
  #lines: string[] = []
  #bytes = 0
  #code = ''
  readonly #ready: Reply[] = []
  violation: string | undefined

  reset(): void {
    this.#partial = []
    this.#partialLength = 0
    this.#lines = []
    this.#bytes = 0
    this.#code = ''
    this.#ready.length = 0
    this.violation = undefined
  }

  push(data: Buffer): void {
    if (this.violation) return
    let from = 0
    for (let nl = data.indexOf(0x0a); nl >= 0; nl = data.indexOf(0x0a, from)) {
      const piece = data.subarray(from, nl)
      from = nl + 1
      if (this.#partialLength + piece.length > MAX_REPLY_LINE) return this.#fail(`a reply line longer than ${MAX_REPLY_LINE} octets`)
      const line = this.#partial.length ? Buffer.concat([...this.#partial, piece]).toString('latin1') : piece.toString('latin1')
      this.#partial = []
      this.#partialLength = 0
      this.#line(line.endsWith('\r') ? line.slice(0, -1) : line)
      if (this.violation) return
    }
    const rest = data.subarray(from)
    if (rest.length) {
      this.#partialLength += rest.length
      if (this.#partialLength > MAX_REPLY_LINE) return this.#fail(`a reply line longer than ${MAX_REPLY_LINE} octets`)
      this.#partial.push(Buffer.from(rest))
    }
  }

  /** The next complete reply, if one has arrived. */
  next(): Reply | undefined {
    return this.#ready.shift()
  }

  #line(line: string): void {
    const code = line.slice(0, 3)
    const sep = line[3]
    if (!/^[2-5]\d\d$/.test(code) || (sep !== undefined && sep !== ' ' && sep !== '-')) return this.#fail(`"${line.slice(0, 40)}" is no reply line`)
    if (this.#lines.length && code !== this.#code) return this.#fail('a multi-line reply changes its code')
    this.#code = code
    this.#lines.push(line.slice(4))
    this.#bytes += line.length
    if (this.#lines.length > MAX_REPLY_LINES || this.#bytes > MAX_REPLY_BYTES)
      return this.#fail(`a reply of more than ${MAX_REPLY_LINES} lines or ${MAX_REPLY_BYTES} octets`)
    if (sep === '-') return
    if (this.#ready.length >= MAX_UNREAD_REPLIES) return this.#fail(`more than ${MAX_UNREAD_REPLIES} replies nobody asked for`)
    this.#ready.push({ code: Number(code), text: this.#lines.join('\n') })
    this.#lines = []
    this.#bytes = 0
    this.#code = ''
  }

  #fail(why: string): void {
    this.violation = why
    this.#partial = []
    this.#partialLength = 0
    this.#lines = []
  }
}
