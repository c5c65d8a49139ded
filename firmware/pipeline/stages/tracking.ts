import type { ConfigStore } from '../../config/store.ts'
import { GatewayError } from '../../errors.ts'
import type { Logger } from '../../log.ts'
import { edited, factsFor } from '../edited.ts'
import type { Submitted } from '../handoff.ts'
import type { Stage } from '../stage.ts'
import { ReadReceipts } from '../../return-path/receipts.ts'
import { confirmHtml, pixelHtml, rewriteSplices } from '../../ledger/rewrite.ts'
import type { TrackingRef, TrackingTokens } from '../../ledger/tokens.ts'

/**
 * Opens and clicks, the sender's half (M9, optional, off by default): for a
 * mail whose policy profile has `tracking` on, to one recipient, with
 * `reports.tracking.baseUrl` set, the HTML parts get their web links replaced
 * by `<baseUrl>/c/<token>` and a 1×1 image `<baseUrl>/o/<token>` — before the
 * signing stage, so S/MIME and DKIM cover the result. Plain-text parts,
 * attachments (the PDF statement) and the statement data are never touched.
 * A mail to several recipients is not rewritten: one body cannot say which of
 * them opened it.
 */
export class TrackingStage implements Stage {
  readonly name = 'submission:tracking'
  readonly #store: ConfigStore
  readonly #tokens: TrackingTokens
  readonly #log: Logger

  /** `store`: read for each mail (#34: a profile's `tracking` approved on the admin page is in force for the next mail). */
  constructor(deps: { store: ConfigStore; tokens: TrackingTokens; log: Logger }) {
    this.#store = deps.store
    this.#tokens = deps.tokens
    this.#log = deps.log.child({ component: 'tracking' })
  }

  async process(mail: Submitted): Promise<Submitted> {
    const env = mail.envelope
    const config = this.#store.current
    const base = config.reports.tracking.baseUrl.replace(/\/+$/, '')
    if (!base || !config.reports.enabled || (env.kind ?? 'statement') !== 'statement' || env.rcptTo.length !== 1) return mail
    const profile = config.policy.profiles.find((p) => p.name === env.profile)
    // M11: a read-receipt class whose evidence is an open or the confirmation link gets the image or the link.
    const evidence = new ReadReceipts(config).ruleFor(env)?.readEvidence
    const track = profile?.tracking === true
    if (!track && evidence !== 'open' && evidence !== 'confirm-link') return mail
    // The keys come from the HSM (async); then every token of the mail is sealed in the one rewrite pass.
    try {
      await this.#tokens.keys()
    } catch (err) {
      throw new GatewayError('ETEMPORARY', 'the tracking key is not available (HSM); try again later', { cause: err })
    }
    const seal = (ref: TrackingRef) => this.#tokens.sealNow(ref)
    let tail = track || evidence === 'open' ? pixelHtml(`${base}/o/${seal({ kind: 'open', id: env.id, recipient: 0 })}`) : ''
    if (evidence === 'confirm-link') tail += confirmHtml(`${base}/r/${seal({ kind: 'confirm', id: env.id, recipient: 0 })}`)
    const done = rewriteSplices(
      mail.message,
      factsFor(mail).tree,
      track ? (url, link) => `${base}/c/${seal({ kind: 'click', id: env.id, recipient: 0, link, url })}` : undefined,
      tail,
    )
    if (!done) {
      if (evidence === 'confirm-link') this.#log.warn({ id: env.id }, 'a confirm-link statement without an HTML part: no link could be added')
      return mail
    }
    this.#log.debug({ id: env.id, links: done.links.length, evidence }, 'tracking links, image or confirmation link added')
    // #34: the bytes and the facts change together, so signing reads no stale tree and parses nothing again.
    return edited(mail, done.splices)
  }
}
