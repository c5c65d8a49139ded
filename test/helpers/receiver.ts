import type { AddressInfo } from 'node:net'
import { SMTPServer, type SMTPServerSession } from 'smtp-server'
import { makeSelfSignedServerCert } from '../../hal/crypto/selfsigned.ts'

export interface Received {
  /** The SMTP session (connection) it came over. */
  session: string
  remoteAddress: string
  mailFrom: string
  rcptTo: string[]
  data: Buffer
  tls: boolean
  ehlo: string
  at: number
}

export interface ReceiverOptions {
  host?: string
  port?: number
  /** Offer STARTTLS (with a self-signed certificate). Default true. */
  tls?: boolean
  onConnect?: (session: SMTPServerSession) => Error | undefined
  /** Refuse a recipient at RCPT TO (`count`: how often this address was offered so far, from 1). */
  onRcptTo?: (address: string, count: number) => Error | undefined
  onData?: (mail: Received, count: number) => Error | 'stall' | undefined
  /** Cut the connection once the first DATA bytes of mail number `count` arrive. */
  dropDuringData?: (count: number) => boolean
  /** Called with every chunk's size as it arrives (bandwidth measurements). */
  onBytes?: (n: number) => void
}

/** A receiving MX on loopback, started by the test: records what arrives, can refuse, drop or stall on demand. */
export async function startReceiver(t: { teardown(fn: () => unknown): void }, opts: ReceiverOptions = {}) {
  const received: Received[] = []
  const connections: string[] = []
  const commands: string[] = []
  let count = 0
  const { certPem, keyPem } = makeSelfSignedServerCert({ hostname: 'mx.test', addresses: [opts.host ?? '127.0.0.1'] })
  const server = new SMTPServer({
    key: keyPem,
    cert: certPem,
    hideSTARTTLS: opts.tls === false,
    disabledCommands: opts.tls === false ? ['STARTTLS', 'AUTH'] : ['AUTH'],
    disableReverseLookup: true,
    size: 50 * 1024 * 1024,
    logger: false,
    onConnect(session, cb) {
      connections.push(session.remoteAddress.replace(/^::ffff:/, ''))
      const err = opts.onConnect?.(session)
      cb(err ?? null)
    },
    onMailFrom(address, _session, cb) {
      commands.push(`MAIL FROM:${address.address}`)
      cb()
    },
    onRcptTo(address, _session, cb) {
      commands.push(`RCPT TO:${address.address}`)
      const offered = commands.filter((c) => c === `RCPT TO:${address.address}`).length
      cb(opts.onRcptTo?.(address.address, offered) ?? null)
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = []
      const n = count + 1
      let cut = false
      stream.on('data', (c: Buffer) => {
        if (!cut && chunks.length === 0 && opts.dropDuringData?.(n)) {
          cut = true
          count++
          for (const conn of server.connections) if (conn.session.id === session.id) (conn as unknown as { _socket: { destroy(): void } })._socket.destroy()
          return
        }
        chunks.push(c)
        opts.onBytes?.(c.length)
      })
      stream.on('end', () => {
        if (cut) return
        const mail: Received = {
          session: session.id,
          remoteAddress: session.remoteAddress.replace(/^::ffff:/, ''),
          mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          rcptTo: session.envelope.rcptTo.map((r) => r.address),
          data: Buffer.concat(chunks),
          tls: Boolean(session.secure),
          ehlo: session.hostNameAppearsAs,
          at: Date.now(),
        }
        const verdict = opts.onData?.(mail, ++count)
        if (verdict === 'stall') return // never answer
        if (verdict instanceof Error) return cb(verdict)
        received.push(mail)
        cb(null, 'OK queued')
      })
    },
  })
  // A client that vanishes mid-handshake (a killed box) is an event, not a crash, for an MX.
  server.on('error', () => {})
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve()))
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))
  const port = (server.server.address() as AddressInfo).port
  /** Its self-signed certificate: a test that trusts it gets verified TLS to this receiver. */
  return { server, port, received, connections, commands, certPem }
}

export function smtpError(code: number, text: string): Error {
  return Object.assign(new Error(text), { responseCode: code })
}

/** Polls until `pred` is true or the time runs out. */
export async function until(pred: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 20))
  }
}
