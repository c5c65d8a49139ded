import { EventEmitter } from 'node:events'
import type { MessageFacts, StatementTags } from './facts.ts'

/** What the submission server knows about a mail when it hands it on. */
export interface Envelope extends StatementTags {
  /** Queue id the box gave the mail; shown to the client in the 250 reply. */
  readonly id: string
  readonly mailFrom: string
  readonly rcptTo: readonly string[]
  /** Submission account, or undefined for a trusted-network client. */
  readonly account: string | undefined
  readonly clientAddress: string
  readonly tls: { readonly protocol: string; readonly cipher: string } | undefined
  readonly receivedAt: number
  /** What the mail is to the box: a statement (default), its archive copy (M7), or a status notification (M8). */
  readonly kind?: 'statement' | 'audit-copy' | 'dsn'
  /** The policy profile that took the mail (the policy stage sets it; later stages read their options from it). */
  readonly profile?: string
  // StatementTags: the firm's statement id, class and batch (X-Statement-ID, -Class, -Batch),
  // read once at submission and kept with the mail (inside the encrypted spool record), so
  // delivery's notices and the operator's view need not parse the message again. Absent in
  // records spooled before they were carried.
}

export interface Submitted {
  readonly envelope: Envelope
  /** The message exactly as it will continue down the pipeline (CRLF only). */
  readonly message: Buffer
  /** What reading the message once found (the policy stage reads it); later stages use these. */
  readonly facts?: MessageFacts
}

/**
 * Where an accepted mail goes before the submission server answers 250. An
 * implementation resolves only once it has taken responsibility for the mail
 * (the durable spool fsyncs first); a rejection makes the server answer with a
 * temporary failure, so the firm's system keeps the mail and retries.
 */
export interface Handoff {
  accept(mail: Submitted): Promise<void>
}

/**
 * The handoff until the encrypted spool lands: it keeps accepted mails in
 * memory and announces each one ('mail' event), so tests and the start-up demo
 * can see exactly what the box accepted. Nothing is delivered anywhere, and the
 * daemon's log says so at start.
 */
export class MemoryHandoff extends EventEmitter<{ mail: [Submitted] }> implements Handoff {
  readonly mails: Submitted[] = []
  readonly #limit: number

  constructor(limit = 10_000) {
    super()
    this.#limit = limit
  }

  accept(mail: Submitted): Promise<void> {
    if (this.mails.length >= this.#limit) return Promise.reject(new Error('in-memory handoff is full'))
    this.mails.push(mail)
    this.emit('mail', mail)
    return Promise.resolve()
  }
}
