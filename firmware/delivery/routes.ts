import { promises as dns } from 'node:dns'
import { isIP } from 'node:net'
import type { Config } from '../config/load.ts'

/** Where a domain's mail goes: candidate hosts in the order to try. */
export interface Hop {
  /** Address to connect to. */
  address: string
  /** Name for TLS (SNI, certificate check) and logs: the MX host name. */
  name: string
  port: number
  preference: number
  tls: 'opportunistic' | 'required' | 'none'
}

export type Route = { hops: Hop[] } | { nullMx: true } | { noRoute: string }

/** The DNS calls routing needs; tests and the demo inject one that maps test domains to loopback. */
export interface Resolver {
  resolveMx(domain: string): Promise<{ exchange: string; priority: number }[]>
  resolve4(host: string): Promise<string[]>
  resolve6(host: string): Promise<string[]>
}

export const systemResolver: Resolver = {
  resolveMx: (d) => dns.resolveMx(d),
  resolve4: (h) => dns.resolve4(h),
  resolve6: (h) => dns.resolve6(h),
}

const NOT_FOUND = new Set(['ENODATA', 'ENOTFOUND', 'NXDOMAIN'])

/**
 * Routing (RFC 5321 §5.1): static routes from config first (like Postfix
 * transport maps), then MX records in preference order (equal preferences
 * shuffled), then the domain's own A/AAAA when it has no MX. A null MX
 * (RFC 7505) means the domain accepts no mail: the message bounces at once.
 */
export class Router {
  readonly #config: Config
  readonly #resolver: Resolver

  constructor(config: Config, resolver: Resolver) {
    this.#config = config
    this.#resolver = resolver
  }

  tlsFor(domain: string, routeTls?: 'opportunistic' | 'required' | 'none'): Hop['tls'] {
    if (this.#config.delivery.requireTls.includes(domain)) return 'required'
    return routeTls ?? 'opportunistic'
  }

  async route(domain: string): Promise<Route> {
    const d = domain.toLowerCase()
    const r = this.#config.delivery.routes.find((x) => x.domain === d) ?? this.#config.delivery.routes.find((x) => x.domain === '*')
    if (r) return { hops: [{ address: r.host, name: r.host, port: r.port, preference: 0, tls: this.tlsFor(d, r.tls) }] }

    let mx: { exchange: string; priority: number }[] = []
    try {
      mx = await this.#resolver.resolveMx(d)
    } catch (err) {
      if (!NOT_FOUND.has((err as NodeJS.ErrnoException).code ?? '')) throw err
    }
    if (mx.length === 1 && (mx[0]!.exchange === '' || mx[0]!.exchange === '.')) return { nullMx: true }
    const port = this.#config.delivery.smtpPort
    const tls = this.tlsFor(d)
    if (mx.length === 0) {
      const addrs = await this.#addresses(d)
      if (addrs.length === 0) return { noRoute: `${d} has no MX and no address` }
      return { hops: addrs.map((address) => ({ address, name: d, port, preference: 0, tls })) }
    }
    const ordered = [...mx].sort((a, b) => a.priority - b.priority || Math.random() - 0.5)
    const hops: Hop[] = []
    for (const m of ordered) {
      for (const address of await this.#addresses(m.exchange)) hops.push({ address, name: m.exchange, port, preference: m.priority, tls })
    }
    return hops.length ? { hops } : { noRoute: `no address for the MX hosts of ${d}` }
  }

  async #addresses(host: string): Promise<string[]> {
    if (isIP(host)) return [host]
    const out: string[] = []
    for (const f of ['resolve4', 'resolve6'] as const) {
      try {
        out.push(...(await this.#resolver[f](host)))
      } catch (err) {
        if (!NOT_FOUND.has((err as NodeJS.ErrnoException).code ?? '')) throw err
      }
    }
    return out
  }
}
