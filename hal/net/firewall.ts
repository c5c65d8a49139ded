import { execFile } from 'node:child_process'
import { isIP } from 'node:net'
import { halError } from '../errors.ts'
import { cidrProblem } from './cidr.ts'

/**
 * The box's firewall (S8; ETSI EN 303 645 5.6, minimise exposed attack
 * surface) as one nftables table, written by provisioning from the
 * configuration and applied atomically (`nft -f`): in, only the listeners the
 * configuration has, each from the clients it allows, and SSH from the
 * management network; out, mail only from the egress addresses and the egress
 * addresses carrying nothing but mail. Everything else is dropped and counted
 * (named counters `dropped_in`, `dropped_out`, `mail_from_other`).
 */
export interface Listener {
  /** What it is, for the comment in the ruleset. */
  name: string
  /** The address it binds; `0.0.0.0` or `::` for all. */
  address: string
  port: number
  /** CIDRs allowed to connect; empty: anyone (the return path's MX, the internet). */
  from: readonly string[]
}

export interface FirewallSpec {
  listeners: readonly Listener[]
  /** SSH for the data centre's administrators, from these CIDRs only (none: no SSH). */
  ssh?: { port: number; from: readonly string[] }
  /** The egress addresses (M2), the only sources of outbound mail. */
  egress: readonly string[]
  /** Ports outbound mail goes to (25, and the ports of static routes). */
  mailPorts: readonly number[]
  /** Internal destinations reached on a mail port from the management address (the audit copy's archive host, M7). */
  internalMail?: readonly { host: string; port: number }[]
}

export const TABLE = 'statement_gateway'

const family = (a: string) => (isIP(a.split('/')[0]!) === 6 ? 'ip6' : 'ip')
const any = (a: string) => a === '0.0.0.0' || a === '::' || a === ''
const set = (xs: readonly (string | number)[]) => (xs.length === 1 ? String(xs[0]) : `{ ${xs.join(', ')} }`)

function checkSpec(s: FirewallSpec): void {
  const bad = (what: string) => {
    throw halError('EFIREWALL_INVALID', `firewall: ${what}`)
  }
  for (const l of s.listeners) {
    if (!any(l.address) && !isIP(l.address)) bad(`listener ${l.name}: ${l.address} is not an IP address`)
    if (!Number.isInteger(l.port) || l.port < 1 || l.port > 65535) bad(`listener ${l.name}: port ${l.port}`)
    for (const c of l.from) if (cidrProblem(c)) bad(`listener ${l.name}: ${c} ${cidrProblem(c)}`)
  }
  for (const c of s.ssh?.from ?? []) if (cidrProblem(c)) bad(`ssh: ${c} ${cidrProblem(c)}`)
  for (const a of s.egress) if (!isIP(a)) bad(`egress ${a} is not an IP address`)
  for (const m of s.internalMail ?? []) if (!isIP(m.host)) bad(`internal mail host ${m.host} is not an IP address`)
  if (!s.mailPorts.length) bad('no mail port')
}

/** Rules accepting `port` on `address` from each CIDR family in `from` (or from anyone). */
function acceptRules(comment: string, address: string, port: number, from: readonly string[]): string[] {
  const daddr = any(address) ? undefined : address
  const out: string[] = []
  const fams = from.length ? (['ip', 'ip6'] as const).filter((f) => from.some((c) => family(c) === f)) : daddr ? [family(daddr)] : [undefined]
  for (const f of fams) {
    if (daddr && f && family(daddr) !== f) continue
    const src = f ? from.filter((c) => family(c) === f) : []
    const parts = [
      daddr ? `${family(daddr)} daddr ${daddr}` : '',
      src.length ? `${f} saddr ${set(src)}` : '',
      `tcp dport ${port}`,
      'ct state new',
      `accept comment "${comment.replace(/"/g, "'")}"`,
    ]
    out.push(parts.filter(Boolean).join(' '))
  }
  return out
}

/** The ruleset, replacing the box's table whole in one transaction (other tables are left alone). */
export function nftRuleset(spec: FirewallSpec): string {
  checkSpec(spec)
  const input = spec.listeners.flatMap((l) => acceptRules(l.name, l.address, l.port, l.from))
  if (spec.ssh?.from.length) input.push(...acceptRules('ssh from the management network', '', spec.ssh.port, spec.ssh.from))
  const egress4 = spec.egress.filter((a) => family(a) === 'ip')
  const egress6 = spec.egress.filter((a) => family(a) === 'ip6')
  const mail = set([...new Set(spec.mailPorts)].sort((a, b) => a - b))
  const out: string[] = []
  for (const m of spec.internalMail ?? []) out.push(`${family(m.host)} daddr ${m.host} tcp dport ${m.port} accept comment "audit copy to the archive"`)
  if (egress4.length) out.push(`ip saddr ${set(egress4)} tcp dport ${mail} accept comment "mail from the egress addresses"`)
  if (egress6.length) out.push(`ip6 saddr ${set(egress6)} tcp dport ${mail} accept comment "mail from the egress addresses"`)
  out.push(`tcp dport ${mail} counter name mail_from_other drop comment "mail from any other address"`)
  if (egress4.length) out.push(`ip saddr ${set(egress4)} counter name dropped_out drop comment "the egress addresses carry mail only"`)
  if (egress6.length) out.push(`ip6 saddr ${set(egress6)} counter name dropped_out drop comment "the egress addresses carry mail only"`)
  const ind = (rules: string[]) => rules.map((r) => `    ${r}`).join('\n')
  return `#!/usr/sbin/nft -f
# Statement Gateway firewall, written by provisioning from the configuration (S8). Do not edit:
# run provisioning again after a configuration change.
table inet ${TABLE} {}
delete table inet ${TABLE}
table inet ${TABLE} {
  counter dropped_in {}
  counter dropped_out {}
  counter mail_from_other {}

  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid counter name dropped_in drop
    iif "lo" accept
    meta l4proto icmp icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } limit rate 10/second accept
    meta l4proto ipv6-icmp accept comment "neighbour discovery and path MTU"
${ind(input)}
    counter name dropped_in drop
  }

  chain forward {
    type filter hook forward priority filter; policy drop;
  }

  chain output {
    type filter hook output priority filter; policy drop;
    ct state established,related accept
    oif "lo" accept
    meta l4proto { icmp, ipv6-icmp } accept
${ind(out)}
    accept comment "DNS, NTP, the HSM, the SIEM, webhooks: from the management address"
  }
}
`
}

/** Applies a ruleset with `nft -f` (in a network namespace for tests); `check` only parses it against the kernel. */
export function applyRuleset(path: string, opts: { netns?: string; check?: boolean } = {}): Promise<void> {
  const args = ['nft', ...(opts.check ? ['-c'] : []), '-f', path]
  const [cmd, ...rest] = opts.netns ? ['ip', 'netns', 'exec', opts.netns, ...args] : args
  return new Promise((resolve, reject) =>
    execFile(cmd!, rest, (err, _stdout, stderr) => (err ? reject(new Error(`nft: ${stderr.trim() || err.message}`)) : resolve())),
  )
}

/** The table's named counters: what was dropped, in packets and bytes. */
export function readCounters(opts: { netns?: string } = {}): Promise<Record<string, { packets: number; bytes: number }>> {
  const args = ['nft', '-j', 'list', 'counters', 'table', 'inet', TABLE]
  const [cmd, ...rest] = opts.netns ? ['ip', 'netns', 'exec', opts.netns, ...args] : args
  return new Promise((resolve, reject) =>
    execFile(cmd!, rest, (err, stdout, stderr) => {
      if (err) return reject(new Error(`nft: ${stderr.trim() || err.message}`))
      const doc = JSON.parse(stdout) as { nftables: { counter?: { name: string; packets: number; bytes: number } }[] }
      resolve(Object.fromEntries(doc.nftables.flatMap((x) => (x.counter ? [[x.counter.name, { packets: x.counter.packets, bytes: x.counter.bytes }]] : []))))
    }),
  )
}
