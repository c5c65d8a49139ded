import { isIPv6 } from 'node:net'
import type { Config } from '../config/load.ts'

/** A record the firm publishes so that reports come back to the box (M8). */
export interface ReturnPathRecord {
  name: string
  type: 'MX' | 'TXT'
  value: string
  /** Zone-file line to publish. */
  zone: string
}

/**
 * The DNS records of every return-path domain: an MX naming the box's
 * listener (`returnPath.mxHost`, by default the submission host name), and an
 * SPF record listing the egress addresses the statements leave from, so the
 * VERP envelope sender passes SPF — and, as a subdomain of the From domain,
 * aligns with it under DMARC's relaxed mode.
 */
export function returnPathRecords(config: Config): ReturnPathRecord[] {
  const mx = (config.returnPath.mxHost || config.submission.hostname).replace(/\.$/, '')
  const ips = [...new Set(config.delivery.egress.map((e) => e.address))].map((a) => (isIPv6(a) ? `ip6:${a}` : `ip4:${a}`))
  const out: ReturnPathRecord[] = []
  for (const d of config.returnPath.domains) {
    const name = `${d.returnPath}.`
    const spf = `v=spf1 ${ips.join(' ')} -all`
    out.push({ name, type: 'MX', value: `10 ${mx}.`, zone: `${name} IN MX 10 ${mx}.` })
    out.push({ name, type: 'TXT', value: spf, zone: `${name} IN TXT "${spf}"` })
  }
  return out
}
