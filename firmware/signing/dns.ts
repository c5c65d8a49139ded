import type { Hsm } from '../../hal/hsm/index.ts'
import type { Config } from '../config/load.ts'
import { dkimKeyLabel } from '../keys/labels.ts'
import { dkimDnsRecord, dkimTxtValue } from './dkim.ts'

/** A DNS record the firm publishes for the box (M4). */
export interface DnsRecord {
  domain: string
  selector: string
  keyType: 'rsa-2048' | 'ed25519'
  /** Owner name, e.g. `dev._domainkey.bank.example`. */
  name: string
  /** TXT value as a resolver returns it (strings joined). */
  value: string
  /** Zone-file line to publish. */
  zone: string
  /** True when the key was made just now (it did not exist in the HSM). */
  created: boolean
}

/**
 * The DKIM TXT records of every configured signing domain, from the public
 * keys in the HSM; a key that does not exist yet is made there (the box would
 * make it at start anyway). `npm run dkim -- dns` prints them; the demo checks
 * signatures against them.
 */
export async function dkimRecords(config: Config, hsm: Hsm): Promise<DnsRecord[]> {
  const out: DnsRecord[] = []
  for (const d of config.signing.domains) {
    for (const [selector, keyType] of [
      [d.dkimSelector, 'rsa-2048'],
      [d.dkimEd25519Selector, 'ed25519'],
    ] as const) {
      if (!selector) continue
      const { publicKey, created } = await hsm.keys.ensureKeyPair(dkimKeyLabel(d.domain, selector), keyType)
      out.push({
        domain: d.domain,
        selector,
        keyType,
        name: `${selector}._domainkey.${d.domain}`,
        value: dkimTxtValue(publicKey),
        zone: dkimDnsRecord(d.domain, selector, publicKey),
        created,
      })
    }
  }
  return out
}
