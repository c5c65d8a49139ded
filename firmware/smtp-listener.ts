import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { SMTPServer, type SMTPServerOptions } from 'smtp-server'
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js'
import { installDataScan } from './smtp-data-scan.ts'

// #35: smtp-server's DATA reader with a native search for the end of data (firmware/smtp-data-scan.ts).
installDataScan()

/** smtp-server's own pause before the greeting (`SMTPConnection.init`, smtp-server 3.21). */
export const LIBRARY_GREETING_DELAY_MS = 100

/**
 * smtp-server with its pause before the greeting as a setting (#35).
 *
 * smtp-server waits a fixed 100 ms before it greets, so that a client that
 * talks first — a spam engine that does not wait for the banner — is caught
 * (421 "You talk too soon"). That is worth keeping on the return path, which
 * faces the internet. The firm's statement systems wait for the banner; for
 * them the pause was most of a submission's latency (at 50 mails/s, one per
 * connection: 101–104 ms before the greeting against Postfix's 0.5 ms).
 *
 * With the library's own delay this is smtp-server unchanged. Otherwise it
 * does what `SMTPServer.connect` and `SMTPConnection.init` do (the connection
 * counted, its events passed on, the client limit checked once the socket's
 * listeners and any implicit-TLS handshake are in place) with its own delay;
 * test/firmware/smtp-listener.test.ts pins both behaviours, so a library
 * update that changes those methods fails there.
 */
export class SmtpListener extends SMTPServer {
  readonly #greetingDelayMs: number

  constructor(options: SMTPServerOptions, greetingDelayMs: number) {
    super(options)
    this.#greetingDelayMs = greetingDelayMs
  }

  override connect(socket: Socket | TLSSocket, socketOptions?: ConstructorParameters<typeof SMTPConnection>[2]): void {
    if (this.#greetingDelayMs === LIBRARY_GREETING_DELAY_MS) return super.connect(socket, socketOptions)
    const connection = new SMTPConnection(this, socket, socketOptions)
    this.connections.add(connection)
    connection.on('error', (err: Error) => this._onError(err))
    connection.on('connect', (data: Parameters<SMTPServer['_onClientConnect']>[0]) => this._onClientConnect(data))
    connection._setListeners(() => {
      if (this.options.maxClients && this.connections.size > this.options.maxClients) {
        return connection.send(421, `${connection.name} Too many connected clients, try again in a moment`, false)
      }
      if (this.#greetingDelayMs === 0) return connection.connectionReady()
      setTimeout(() => connection.connectionReady(), this.#greetingDelayMs).unref()
    })
  }
}
