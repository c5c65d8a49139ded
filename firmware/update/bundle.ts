import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto'
import { closeSync, fsyncSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs'
import { dirname, join, posix } from 'node:path'
import { spkiSha256 } from '../../hal/crypto/der.ts'
import { createError } from '../box-errors.ts'

/**
 * Firmware bundles (S8; ETSI EN 303 645 5.3), in a format with no archive
 * parser before the signature is checked: a magic line, the manifest (JSON,
 * length-prefixed), its signatures (JSON, length-prefixed), then every file's
 * bytes one after the other in the manifest's order. The signed manifest is
 * the only index: a file is where the manifest says, as long as it says, with
 * the SHA-256 it says, and nothing follows the last one. There are no
 * symlinks, devices, owners or setuid bits to carry, so none can come in.
 *
 *   "SGFW1\n" | u32 manifest length | manifest | u32 signatures length | signatures | payload
 */
export const MAGIC = Buffer.from('SGFW1\n')
export const PRODUCT = 'statement-gateway'
const MAX_MANIFEST = 32 * 1024 * 1024
const MAX_FILES = 100_000
const MAX_FILE = 1024 * 1024 * 1024

export interface ManifestFile {
  path: string
  size: number
  sha256: string
  /** 0o644, or 0o755 for a program. */
  mode: number
}

export interface Manifest {
  product: string
  /** Semantic version, what people read. */
  version: string
  /** Anti-rollback number: a bundle below the box's stored minimum is refused; raised at commit. */
  securityVersion: number
  /** The oldest version this one may replace (its migrations start there). */
  minUpgradeFrom: string
  buildTime: string
  sourceCommit: string
  files: ManifestFile[]
  payloadBytes: number
  /** Vendor public keys (SPKI PEM) the box trusts from this version's commit on: key rotation. */
  addKeys?: string[]
  /** Key ids (SHA-256 of the SPKI DER) it no longer trusts from then on. */
  removeKeys?: string[]
}

export interface Signature {
  keyId: string
  alg: 'ecdsa-p256-sha256' | 'ed25519'
  sig: string
}

export class BundleError extends createError('EBUNDLE_INVALID', 'BundleError') {
  /** The version the bundle's signed manifest names, when the refusal came after it was read. */
  version?: string
}

/** A vendor key's id in signatures and in `removeKeys`: its SPKI fingerprint. */
export const keyId = spkiSha256

export function semver(v: string): [number, number, number] {
  const m = /^(\d{1,6})\.(\d{1,6})\.(\d{1,6})$/.exec(v)
  if (!m) throw new BundleError(`version ${v} is not major.minor.patch`)
  return [Number(m[1]), Number(m[2]), Number(m[3])]
}

export function compareVersions(a: string, b: string): number {
  const [x, y] = [semver(a), semver(b)]
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i]! - y[i]!
  return 0
}

/** A path that stays inside the slot: relative, normalised, no `..`, no empty or dot segment, printable. */
export function pathProblem(p: string): string | undefined {
  if (!p || p.length > 1024) return 'is empty or too long'
  if (p.startsWith('/')) return 'is absolute'
  if (/[\u0000-\u001f\\]/.test(p)) return 'has control characters or backslashes'
  if (p.split('/').some((s) => s === '' || s === '.' || s === '..')) return 'leaves the slot or is not normalised'
  if (posix.normalize(p) !== p) return 'is not normalised'
  return undefined
}

/** The manifest's own rules, before any byte of a file is written. */
export function checkManifest(m: Manifest): void {
  if (m.product !== PRODUCT) throw new BundleError(`the bundle is for "${m.product}", not ${PRODUCT}`)
  semver(m.version)
  semver(m.minUpgradeFrom)
  if (!Number.isInteger(m.securityVersion) || m.securityVersion < 0) throw new BundleError('securityVersion is not a whole number')
  if (!Array.isArray(m.files) || m.files.length > MAX_FILES) throw new BundleError('the file list is missing or too long')
  const seen = new Set<string>()
  const dirs = new Set<string>()
  let total = 0
  for (const f of m.files) {
    const problem = pathProblem(f.path)
    if (problem) throw new BundleError(`file ${JSON.stringify(f.path)} ${problem}`)
    if (seen.has(f.path)) throw new BundleError(`file ${f.path} is listed twice`)
    const parts = f.path.split('/')
    const parents = parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('/'))
    if (dirs.has(f.path) || parents.some((d) => seen.has(d))) throw new BundleError(`file ${f.path} is also a directory`)
    seen.add(f.path)
    for (const d of parents) dirs.add(d)
    if (f.mode !== 0o644 && f.mode !== 0o755)
      throw new BundleError(`file ${f.path} has mode ${f.mode.toString(8)}: only 644 and 755 (no setuid, setgid or sticky bit)`)
    if (!Number.isInteger(f.size) || f.size < 0 || f.size > MAX_FILE) throw new BundleError(`file ${f.path} has an impossible size`)
    if (!/^[0-9a-f]{64}$/.test(f.sha256)) throw new BundleError(`file ${f.path} has no SHA-256`)
    total += f.size
  }
  if (total !== m.payloadBytes) throw new BundleError(`the files add up to ${total} bytes, the manifest says ${m.payloadBytes}`)
}

function readExactly(fd: number, length: number, position: number): Buffer {
  const b = Buffer.alloc(length)
  let got = 0
  while (got < length) {
    const n = readSync(fd, b, got, length - got, position + got)
    if (!n) throw new BundleError('the bundle ends early')
    got += n
  }
  return b
}

export interface OpenedBundle {
  manifest: Manifest
  /** Which trusted key signed it. */
  signedBy: string
  payloadOffset: number
  fileSize: number
}

/**
 * Reads the header and checks the signature first — over the manifest's
 * bytes, by any key the box trusts — then parses and checks the manifest.
 */
export function openBundle(fd: number, fileSize: number, trusted: readonly KeyObject[]): OpenedBundle {
  // #31: a file shorter than the magic line is not a bundle either (it used to say "the bundle ends early").
  if (fileSize < MAGIC.length) throw new BundleError('not a firmware bundle of this product')
  const magic = readExactly(fd, MAGIC.length, 0)
  if (!magic.equals(MAGIC)) throw new BundleError('not a firmware bundle of this product')
  const mLen = readExactly(fd, 4, MAGIC.length).readUInt32BE(0)
  if (mLen > MAX_MANIFEST) throw new BundleError('the manifest is too large')
  const manifestBytes = readExactly(fd, mLen, MAGIC.length + 4)
  const sLen = readExactly(fd, 4, MAGIC.length + 4 + mLen).readUInt32BE(0)
  if (sLen > 64 * 1024) throw new BundleError('the signature block is too large')
  let sigs: Signature[]
  try {
    sigs = JSON.parse(readExactly(fd, sLen, MAGIC.length + 8 + mLen).toString('utf8')) as Signature[]
  } catch {
    throw new BundleError('the signature block is not readable')
  }
  const byId = new Map(trusted.map((k) => [keyId(k), k]))
  const good = (Array.isArray(sigs) ? sigs : []).find((s) => {
    const key = typeof s?.keyId === 'string' ? byId.get(s.keyId) : undefined
    if (!key || typeof s.sig !== 'string') return false
    const sig = Buffer.from(s.sig, 'base64')
    return key.asymmetricKeyType === 'ed25519' ? verify(null, manifestBytes, key, sig) : verify('sha256', manifestBytes, key, sig)
  })
  if (!good) throw new BundleError('no signature by a key this box trusts (signed by another key, or the manifest was changed)')
  let manifest: Manifest
  try {
    manifest = JSON.parse(manifestBytes.toString('utf8')) as Manifest
  } catch {
    throw new BundleError('the signed manifest is not JSON')
  }
  checkManifest(manifest)
  const payloadOffset = MAGIC.length + 8 + mLen + sLen
  if (fileSize !== payloadOffset + manifest.payloadBytes)
    throw new BundleError(
      fileSize > payloadOffset + manifest.payloadBytes
        ? `${fileSize - payloadOffset - manifest.payloadBytes} bytes follow the last file: data the manifest does not list`
        : 'the bundle is shorter than its manifest: a file is missing or cut short',
    )
  return { manifest, signedBy: good.keyId, payloadOffset, fileSize }
}

/**
 * Writes every file into `dir` (which must not exist yet), each hashed as it is
 * written and compared with the manifest; the first difference stops it. The
 * caller removes `dir` on failure.
 */
export function extractBundle(fd: number, b: OpenedBundle, dir: string): void {
  mkdirSync(dir, { mode: 0o755 })
  const chunk = Buffer.alloc(1 << 20)
  let pos = b.payloadOffset
  for (const f of b.manifest.files) {
    const target = join(dir, f.path)
    mkdirSync(dirname(target), { recursive: true, mode: 0o755 })
    const out = openSync(target, 'wx', f.mode)
    const hash = createHash('sha256')
    try {
      for (let left = f.size; left > 0;) {
        const n = readSync(fd, chunk, 0, Math.min(chunk.length, left), pos)
        if (!n) throw new BundleError(`${f.path} is cut short`)
        hash.update(chunk.subarray(0, n))
        writeSync(out, chunk, 0, n)
        pos += n
        left -= n
      }
      fsyncSync(out)
    } finally {
      closeSync(out)
    }
    if (hash.digest('hex') !== f.sha256) throw new BundleError(`${f.path} does not match its SHA-256 in the manifest (changed after signing)`)
  }
}

/** The trusted vendor keys from PEM texts. */
export function trustedKeys(pems: readonly string[]): KeyObject[] {
  return pems.map((p) => createPublicKey(p))
}
