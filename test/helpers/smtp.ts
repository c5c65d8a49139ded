import { connect as netConnect, type Socket } from 'node:net'
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls'

export interface Reply {
  code: number
  lines: string[]
  text: string
}

/**
 * A raw SMTP client for tests that must control every byte (smuggling, partial
 * DATA, odd line endings), which a well-behaved library refuses to send.
 */
export class RawSmtp {
  socket: Socket | TLSSocket
  #buffer = ''
  #waiters: (() => void)[] = []
  closed = false

  private constructor(socket: Socket | TLSSocket) {
    this.socket = socket
    this.#attach()
  }

  static async open(port: number, opts: { host?: string; tls?: ConnectionOptions; localAddress?: string } = {}): Promise<RawSmtp> {
    const host = opts.host ?? '127.0.0.1'
    const raw = () => netConnect({ host, port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) })
    const socket = opts.tls ? tlsConnect({ ...(opts.localAddress ? { socket: raw() } : { host, port }), ...opts.tls }) : raw()
    await new Promise<void>((resolve, reject) => {
      socket.once(opts.tls ? 'secureConnect' : 'connect', () => resolve())
      socket.once('error', reject)
    })
    return new RawSmtp(socket)
  }

  #attach(): void {
    this.socket.setEncoding('latin1')
    this.socket.on('data', (d: string) => {
      this.#buffer += d
      this.#wake()
    })
    this.socket.on('close', () => {
      this.closed = true
      this.#wake()
    })
    this.socket.on('error', () => {})
  }

  #wake(): void {
    const w = this.#waiters
    this.#waiters = []
    for (const f of w) f()
  }

  /** Reads one (possibly multi-line) reply. */
  async reply(timeoutMs = 10_000): Promise<Reply> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const m = /^((?:\d{3}-[^\r\n]*\r\n)*)(\d{3}) ?([^\r\n]*)\r\n/.exec(this.#buffer)
      if (m) {
        this.#buffer = this.#buffer.slice(m[0].length)
        const lines = m[0]
          .trimEnd()
          .split('\r\n')
          .map((l) => l.slice(4))
        return { code: Number(m[2]), lines, text: lines.join('\n') }
      }
      if (this.closed) throw new Error(`connection closed; unparsed: ${JSON.stringify(this.#buffer)}`)
      if (Date.now() > deadline) throw new Error(`no reply within ${timeoutMs} ms; buffer: ${JSON.stringify(this.#buffer)}`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50)
        this.#waiters.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
  }

  async cmd(line: string): Promise<Reply> {
    this.write(`${line}\r\n`)
    return this.reply()
  }

  write(data: string | Buffer): void {
    this.socket.write(data)
  }

  async starttls(options: ConnectionOptions = {}): Promise<void> {
    const r = await this.cmd('STARTTLS')
    if (r.code !== 220) throw new Error(`STARTTLS refused: ${r.code} ${r.text}`)
    const plain = this.socket
    plain.removeAllListeners('data')
    const secure = tlsConnect({ socket: plain, ...options })
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve())
      secure.once('error', reject)
    })
    this.socket = secure
    this.#attach()
  }

  /** Greeting, EHLO, STARTTLS, EHLO again; returns the post-TLS EHLO reply. */
  async handshake(tls: ConnectionOptions, ehlo = 'client.test'): Promise<Reply> {
    const greet = await this.reply()
    if (greet.code !== 220) throw new Error(`greeting ${greet.code} ${greet.text}`)
    await this.cmd(`EHLO ${ehlo}`)
    await this.starttls(tls)
    return this.cmd(`EHLO ${ehlo}`)
  }

  async authPlain(user: string, password: string): Promise<Reply> {
    return this.cmd(`AUTH PLAIN ${Buffer.from(`\0${user}\0${password}`).toString('base64')}`)
  }

  close(): void {
    this.socket.destroy()
  }
}
