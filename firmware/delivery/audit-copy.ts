import type { Config } from '../config/load.ts'
import type { Handoff, Submitted } from '../pipeline/handoff.ts'

/**
 * Puts each accepted statement into the spool, and with an archive mailbox
 * configured (M7) a byte-identical copy as its own delivery, before the 250.
 */
export class AuditCopyHandoff implements Handoff {
  readonly #spool: Handoff
  readonly #config: Config
  constructor(spool: Handoff, config: Config) {
    this.#spool = spool
    this.#config = config
  }
  async accept(mail: Submitted): Promise<void> {
    await this.#spool.accept(mail)
    const a = this.#config.delivery.auditCopy
    if (!a.address || (mail.envelope.kind ?? 'statement') !== 'statement') return
    await this.#spool.accept({ envelope: { ...mail.envelope, id: `${mail.envelope.id}-a`, rcptTo: [a.address], kind: 'audit-copy' }, message: mail.message })
  }
}
