import { createHash, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { keyId, MAGIC, PRODUCT, type Manifest } from '../../firmware/update/bundle.ts'

/** A vendor key pair for a test (the box trusts `pub`). */
export function vendorKey(): { priv: KeyObject; pub: string; id: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  return { priv: privateKey, pub: publicKey.export({ type: 'spki', format: 'pem' }).toString(), id: keyId(publicKey) }
}

export interface Crafted {
  version?: string
  securityVersion?: number
  minUpgradeFrom?: string
  product?: string
  files?: Record<string, string>
  modes?: Record<string, number>
  addKeys?: string[]
  /** Changes the manifest before it is signed (a vendor mistake, or an attack with a stolen key). */
  manifest?: (m: Manifest) => void
  /** Changes the bundle's bytes after signing (an attack without the key). */
  after?: (bundle: Buffer, at: { manifestStart: number; payloadStart: number }) => Buffer
}

/**
 * A bundle written by hand, byte by byte as the format says, so a test can
 * make it wrong in any way a real one could be.
 */
export function craftBundle(dir: string, name: string, key: KeyObject, c: Crafted = {}): string {
  const files = Object.entries(c.files ?? { 'firmware/main.ts': 'console.log("v")\n', 'package.json': '{"version":"1.0.0"}\n' }).sort(([a], [b]) =>
    a < b ? -1 : 1,
  )
  const manifest: Manifest = {
    product: c.product ?? PRODUCT,
    version: c.version ?? '1.0.0',
    securityVersion: c.securityVersion ?? 1,
    minUpgradeFrom: c.minUpgradeFrom ?? '0.1.0',
    buildTime: '2026-11-26T00:00:00.000Z',
    sourceCommit: 'test',
    files: files.map(([path, content]) => ({
      path,
      size: Buffer.byteLength(content),
      sha256: createHash('sha256').update(content).digest('hex'),
      mode: c.modes?.[path] ?? 0o644,
    })),
    payloadBytes: files.reduce((a, [, content]) => a + Buffer.byteLength(content), 0),
    ...(c.addKeys ? { addKeys: c.addKeys } : {}),
  }
  c.manifest?.(manifest)
  const mBytes = Buffer.from(JSON.stringify(manifest))
  const sig = Buffer.from(JSON.stringify([{ keyId: keyId(createPublicKey(key)), alg: 'ed25519', sig: sign(null, mBytes, key).toString('base64') }]))
  const u32 = (n: number) => {
    const b = Buffer.alloc(4)
    b.writeUInt32BE(n)
    return b
  }
  let bundle: Buffer = Buffer.concat([MAGIC, u32(mBytes.length), mBytes, u32(sig.length), sig, ...files.map(([, content]) => Buffer.from(content))])
  if (c.after) bundle = c.after(bundle, { manifestStart: MAGIC.length + 4, payloadStart: MAGIC.length + 8 + mBytes.length + sig.length })
  const path = join(dir, name)
  writeFileSync(path, bundle)
  return path
}
