import { readFileSync } from 'node:fs'
import { cidrProblem } from '../../../hal/net/cidr.ts'
import { int, list, oneOf, str } from '../types.ts'

/** Field shapes several sections share. */

export const cidr = (description: string, def: string[]) =>
  list(str({ default: '', description: '', check: cidrProblem, typeName: 'CIDR' }), { default: def, description })

export const port = (description: string, def: number) => int({ default: def, min: 0, max: 65535, description })

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
