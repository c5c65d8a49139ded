import { readFileSync } from 'node:fs'
import { cidrProblem } from '../../../hal/net/cidr.ts'
import { int, list, oneOf, str } from '../types.ts'

/** Field shapes several sections share. */

export const cidr = (description: string, def: string[]) =>
  list(str({ default: '', description: '', check: cidrProblem, typeName: 'CIDR' }), { default: def, description })

export const port = (description: string, def: number) => int({ default: def, min: 0, max: 65535, description })

/** The type names that mark a listener's port or address: tools and tests find every listener by them. */
export const LISTENER_TYPES = ['listener port (0…65535)', 'host:port'] as const

/** The port a listener of the box binds (0 picks a free one). */
export const listenerPort = (description: string, def: number) => int({ default: def, min: 0, max: 65535, description, typeName: LISTENER_TYPES[0] })

/** `host:port` of a listener (`[v6]:port` for an IPv6 address); port 0 picks a free one. */
export const listenAddress = (description: string, def: string) =>
  str({
    default: def,
    typeName: LISTENER_TYPES[1],
    check: (v) => {
      const colon = v.lastIndexOf(':')
      const host = v.slice(0, colon)
      const p = v.slice(colon + 1)
      if (colon < 1 || !/^\d{1,5}$/.test(p) || Number(p) > 65535) return 'must be host:port'
      if (host.startsWith('[') ? !/^\[[0-9a-fA-F:.]+\]$/.test(host) : !/^[A-Za-z0-9.-]+$/.test(host)) return 'must be host:port ([address]:port for IPv6)'
      return undefined
    },
    description,
  })

/** The host (brackets of an IPv6 address removed) and port of a `listenAddress` value. */
export function splitHostPort(v: string): { host: string; port: number } {
  const colon = v.lastIndexOf(':')
  return { host: v.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(v.slice(colon + 1)) }
}

export const mode = (def: 'off' | 'monitor' | 'enforce', rule: string) =>
  oneOf(['off', 'monitor', 'enforce'] as const, {
    default: def,
    description: `${rule} Mode: \`enforce\` refuses with the rule's code, \`monitor\` accepts and records the hit, \`off\`.`,
  })

/** True when `path` can be read and holds at least one PEM certificate. */
export function pemCertificates(path: string): boolean {
  try {
    return readFileSync(path, 'utf8').includes('-----BEGIN CERTIFICATE-----')
  } catch {
    return false
  }
}
