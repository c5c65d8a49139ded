import type { ConfigStore } from '../../config/store.ts'
import { GatewayError } from '../../errors.ts'
import { edited, factsFor } from '../edited.ts'
import type { Submitted } from '../handoff.ts'
import type { Stage } from '../stage.ts'
import { ReadReceipts } from '../../return-path/receipts.ts'
import type { ReturnPathTokens } from '../../return-path/verp.ts'

/**
 * Asks for the read receipt (M11), before the signing stage so the DKIM
 * signature covers the request (the S/MIME signature covers the body, as it
 * does for From and Subject): a statement that falls under a read-receipt
 * rule gets `Disposition-Notification-To: <r-<token>@<return-path domain>>`,
 * whose token names the statement and its recipient, so the MDN comes back to
 * the box and to no one else.
 */
export class ReadReceiptStage implements Stage {
  readonly name = 'submission:read-receipt'
  readonly #store: ConfigStore
  readonly #tokens: ReturnPathTokens

  constructor(deps: { store: ConfigStore; tokens: ReturnPathTokens }) {
    this.#store = deps.store
    this.#tokens = deps.tokens
  }

  async process(mail: Submitted): Promise<Submitted> {
    const env = mail.envelope
    const receipts = new ReadReceipts(this.#store.current)
    const rule = receipts.ruleFor(env)
    if (!rule || rule.readEvidence !== 'mdn') return mail
    try {
      await this.#tokens.keys()
    } catch (err) {
      throw new GatewayError('ETEMPORARY', 'the return-path key is not available (HSM); try again later', { cause: err })
    }
    const address = `${this.#tokens.localPart({ kind: 'r', id: env.id, recipient: 0 })}@${receipts.returnDomain(env)!}`
    // A request the firm put in is replaced: receipts must come to the box, which counts them. The
    // facts move with the bytes (#34): signing reads the tree as it now is, without parsing again.
    const top = factsFor(mail).tree
    return edited(mail, [
      ...top.headers.filter((h) => h.key === 'disposition-notification-to').map((h) => ({ start: h.start, end: h.end, bytes: Buffer.alloc(0) })),
      { start: 0, end: 0, bytes: Buffer.from(`Disposition-Notification-To: <${address}>\r\n`) },
    ])
  }
}
