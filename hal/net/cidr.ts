import { BlockList, isIP } from 'node:net'
import { halError } from '../errors.ts'

/**
 * A set of address ranges (CIDR) built on node:net BlockList, used for client
 * allowlists and trusted networks (S8: allowlist access).
 */
export class AddressSet {
  readonly #list = new BlockList()
  readonly ranges: readonly string[]

  constructor(ranges: readonly string[]) {
    for (const r of ranges) {
      const { address, prefix, family } = parseCidr(r)
      this.#list.addSubnet(address, prefix, family)
    }
    this.ranges = [...ranges]
  }

  get empty(): boolean {
    return this.ranges.length === 0
  }

  has(address: string): boolean {
    const a = unmapIPv4(address)
    const family = isIP(a)
    if (family === 0) return false
    return this.#list.check(a, family === 4 ? 'ipv4' : 'ipv6')
  }
}

/** `::ffff:192.0.2.1` (IPv4 on a dual-stack socket) is 192.0.2.1. */
export function unmapIPv4(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  return m ? m[1]! : address
}

export function parseCidr(cidr: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const [address = '', prefixText, extra] = cidr.split('/')
  if (extra !== undefined) throw halError('ENET_INVALID', `"${cidr}" is not an address range`)
  const v = isIP(address)
  if (v === 0) throw halError('ENET_INVALID', `"${cidr}" does not start with an IPv4 or IPv6 address`)
  const max = v === 4 ? 32 : 128
  const prefix = prefixText === undefined ? max : Number(prefixText)
  if (!/^\d+$/.test(prefixText ?? String(max)) || prefix > max) throw halError('ENET_INVALID', `"${cidr}" has a bad prefix length (0…${max})`)
  return { address, prefix, family: v === 4 ? 'ipv4' : 'ipv6' }
}

/** Validation hook for config fields: undefined when fine, a reason otherwise. */
export function cidrProblem(v: string): string | undefined {
  try {
    parseCidr(v)
    return undefined
  } catch (err) {
    return (err as Error).message
  }
}
