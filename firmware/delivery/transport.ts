import { applyTbf } from '../../hal/net/tc.ts'
import { ByteRateLimiter } from '../../hal/net/throttle.ts'
import type { Config } from '../config/load.ts'
import type { EventSink } from '../events.ts'
import type { Logger } from '../log.ts'
import { domainOf } from '../mime/address.ts'
import { Classifier, rulesWith } from '../return-path/classify.ts'
import type { ReturnPathTokens } from '../return-path/verp.ts'
import { SmtpError, type SmtpClient } from './client.ts'
import { isBlockReply, isThrottleReply, type Egress, type EgressPool } from './egress.ts'
import type { ConnectionPool } from './pool.ts'
import { Router, type Hop, type Resolver } from './routes.ts'

export type Outcome = {
  status: 'sent' | 'bounced' | 'deferred'
  reply: string
  mx?: string
  ip?: string
  tls?: string
  /** Sent, but the MX refused some recipients at RCPT: their own outcome (5xx bounced, 4xx deferred). */
  perRecipient?: Map<string, { status: 'bounced' | 'deferred'; reply: string }>
  /** When the receiver's 250 arrived (performance.now()), for the 250-to-journal window. */
  at?: number
}

/**
 * One attempt to hand a mail to one domain (M2, M3, M7, S1): its route
 * (static, MX, null MX), each MX host in turn, each egress address in turn
 * where a destination blocks or throttles one, the connection from the pool
 * under the address's and the shared byte budget, and each recipient's reply
 * as a `delivery.attempt` event. The engine decides what the outcome means for
 * the mail in the spool.
 */
export class Transport {
  #config: Config
  readonly #log: Logger
  readonly #events: EventSink
  readonly #resolver: Resolver
  #router: Router
  readonly #pool: ConnectionPool
  readonly #egress: EgressPool
  readonly #limiter: ByteRateLimiter
  readonly #messageRates = new Map<string, ByteRateLimiter>()
  /** The return path's classifier (the firm's rules first): a refusal no rule knows is retried, not bounced (#36). */
  readonly #classifier: Classifier

  constructor(o: { config: Config; log: Logger; events: EventSink; resolver: Resolver; pool: ConnectionPool; egress: EgressPool; limiter: ByteRateLimiter }) {
    this.#config = o.config
    this.#log = o.log
    this.#events = o.events
    this.#resolver = o.resolver
    this.#router = new Router(o.config, o.resolver)
    this.#pool = o.pool
    this.#egress = o.egress
    this.#limiter = o.limiter
    this.#classifier = new Classifier(rulesWith(o.config.returnPath.rulesFile || undefined))
  }

  /**
   * What a refusal means for the recipients it names (M8; #36 "unclassified is conservative"): a 4xx is
   * retried; a 5xx is final only when a rule knows what it says. A permanent code with words no rule
   * knows (`554 5.0.0` and a text of the receiver's own) is retried until the mail expires
   * (`delivery.maxAgeSeconds`), so it never becomes a hard bounce on a guess.
   */
  #verdict(code: number, reply: string): 'bounced' | 'deferred' {
    if (code < 500) return 'deferred'
    return this.#classifier.classify({ text: reply, reply: String(code) }).category === 'unclassified' ? 'deferred' : 'bounced'
  }

  /**
   * S7: routes, egress addresses, the byte budget (and the kernel shaping on the egress NICs), rates and
   * timeouts of an approved configuration, for the next attempt.
   */
  async reconfigure(config: Config): Promise<void> {
    const before = this.#config.delivery
    const d = config.delivery
    this.#config = config
    this.#router = new Router(config, this.#resolver)
    this.#pool.reconfigure(config)
    this.#egress.reconfigure(config)
    this.#messageRates.clear()
    if (d.bandwidthBitsPerSecond !== before.bandwidthBitsPerSecond || d.burstBytes !== before.burstBytes) {
      this.#limiter.setRate(d.bandwidthBitsPerSecond / 8, d.burstBytes)
      for (const device of d.tcDevices) await applyTbf(device, d.bandwidthBitsPerSecond)
      this.#log.info({ bitsPerSecond: d.bandwidthBitsPerSecond }, 'bandwidth budget changed without a restart')
    }
    this.#log.info({ egress: d.egress.map((e) => e.address), routes: d.routes.length }, 'delivery configuration changed without a restart')
  }

  async toDomain(id: string, kind: string, domain: string, mailFrom: string, rcpts: string[], message: Buffer, transaction?: string): Promise<Outcome> {
    const record = (recipients: readonly string[], o: Outcome) => this.#record(id, kind, recipients, o, transaction)
    let hops: Hop[]
    const copy = kind === 'audit-copy'
    if (copy) {
      const a = this.#config.delivery.auditCopy
      hops = [{ address: a.host, name: a.host, port: a.port, preference: 0, tls: 'opportunistic' }]
    } else {
      const route = await this.#router.route(domain).catch((err: Error) => ({ noRoute: `DNS lookup failed: ${err.message}` }))
      if ('nullMx' in route) return record(rcpts, { status: 'bounced', reply: `556 5.1.10 ${domain} accepts no mail (null MX, RFC 7505)` })
      if ('noRoute' in route) return record(rcpts, { status: 'deferred', reply: `451 4.4.4 ${route.noRoute}` })
      hops = route.hops
    }
    let last: Outcome = { status: 'deferred', reply: '451 4.4.1 no destination could be reached' }
    for (const hop of hops) {
      const dest = `${hop.address}:${hop.port}`
      const tried = new Set<string>()
      for (;;) {
        // Audit copies take the internal route from the box's own address, never an egress address (M7).
        const egress: Egress | undefined = copy ? (tried.size ? undefined : this.#pool.internalEgress) : this.#egress.pick(dest, tried)
        if (!egress) break
        tried.add(egress.address)
        let client: SmtpClient | undefined
        try {
          await this.#messageRate(dest)
          client = await this.#pool.acquire(hop, egress, copy ? [] : [...this.#egress.limitersFor(egress), this.#limiter])
          const res = await client.send(mailFrom, rcpts, message)
          const where = { mx: hop.name, ip: client.localAddress, tls: client.tlsVersion }
          this.#pool.release(hop, egress, client)
          const outcome: Outcome = { status: 'sent', reply: `${res.reply.code} ${res.reply.text}`, ...where, at: performance.now() }
          if (res.rejected.length) {
            outcome.perRecipient = new Map()
            for (const { rcpt, reply } of res.rejected) {
              const text = `${reply.code} ${reply.text.replace(/\n/g, ' ')}`
              const r = { status: this.#verdict(reply.code, text), reply: text }
              outcome.perRecipient.set(rcpt, r)
              record([rcpt], { ...r, ...where })
            }
          }
          return record(res.accepted, outcome)
        } catch (err) {
          client?.close()
          if (client) this.#pool.forget(hop)
          if (!(err instanceof SmtpError)) throw err
          const reply = err.reply ? `${err.reply.code} ${err.reply.text.replace(/\n/g, ' ')}` : `451 4.4.2 ${err.message}`
          const base = { mx: hop.name, ip: client?.localAddress ?? (egress.address || undefined), tls: client?.tlsVersion }
          // A reply about this source address, not the mail: it rests at this destination
          // (blocked: long; asked to slow down: briefly) and the next address tries at once (M2).
          const about = !err.reply || copy ? undefined : isBlockReply(err.reply.text) ? 'block' : isThrottleReply(err.reply) ? 'throttle' : undefined
          if (about) {
            const d = this.#config.delivery
            this.#egress.pause(client?.localAddress ?? egress.address, dest, (about === 'block' ? d.blockPauseSeconds : d.throttlePauseSeconds) * 1000)
            this.#log.warn(
              { destination: hop.name, sourceIp: egress.address, reply },
              about === 'block'
                ? 'destination blocks this source address; paused it there'
                : 'destination asks this source address to slow down; resting it there',
            )
            last = { status: 'deferred', reply, ...base }
            continue
          }
          if (err.reply && err.reply.code >= 500) return record(rcpts, { status: this.#verdict(err.reply.code, reply), reply, ...base })
          last = { status: 'deferred', reply, ...base }
          break // temporary failure or unreachable: next MX host
        }
      }
    }
    return record(rcpts, last)
  }

  /** Per-destination message rate (GCRA with one "byte" per message), when configured. */
  async #messageRate(dest: string): Promise<void> {
    const rate = this.#config.delivery.perDestinationMessagesPerSecond
    if (!rate) return
    let limiter = this.#messageRates.get(dest)
    if (!limiter) this.#messageRates.set(dest, (limiter = new ByteRateLimiter({ bytesPerSecond: rate, burstBytes: rate, clock: { now: () => Date.now() } })))
    await limiter.take(1)
  }

  #record(id: string, kind: string, recipients: readonly string[], o: Outcome, transaction: string | undefined): Outcome {
    const outcome = o.status === 'sent' ? 'delivered' : o.status
    this.#events.emit({
      type: 'delivery.attempt',
      id,
      kind,
      outcome,
      recipients,
      mx: o.mx,
      sourceIp: o.ip,
      reply: o.reply,
      tls: o.tls,
      ...(transaction ? { transaction } : {}),
    })
    return o
  }
}

/**
 * The transactions one attempt makes (M8): the recipients not yet final, one transaction per
 * domain; with a return path (VERP), one per recipient, each with its own token as the envelope
 * sender, so that a bounce names its statement and recipient.
 */
export function transactions(
  env: { id: string; mailFrom: string; rcptTo: readonly string[] },
  finished: ReadonlySet<number>,
  verp?: { domain: string; tokens: ReturnPathTokens },
): { domain: string; mailFrom: string; rcpts: string[] }[] {
  const groups = new Map<string, { domain: string; mailFrom: string; rcpts: string[] }>()
  env.rcptTo.forEach((r, i) => {
    if (finished.has(i)) return
    const domain = domainOf(r)
    const key = verp ? `${domain} ${i}` : domain
    const mailFrom = verp ? `${verp.tokens.localPart({ kind: 'b', id: env.id, recipient: i })}@${verp.domain}` : env.mailFrom
    const group = groups.get(key) ?? { domain, mailFrom, rcpts: [] }
    group.rcpts.push(r)
    groups.set(key, group)
  })
  return [...groups.values()]
}
