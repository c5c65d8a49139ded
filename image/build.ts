import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { closeSync, existsSync, lstatSync, openSync, readdirSync, readFileSync, readSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { MAGIC, PRODUCT, checkManifest, type Manifest, type ManifestFile, type Signature } from '../firmware/update/bundle.ts'
import { halError } from '../hal/errors.ts'

/**
 * Builds a firmware bundle from a clean checkout: the TypeScript sources the
 * box runs (firmware/, hal/, provisioning/, image/), package.json and its lock,
 * the README, and the production node_modules the lock names (the pinned Node
 * runtime and the native addon as `npm ci` built them) — never tests, benches
 * or dev tools. Same inputs, same bytes: files sorted by path, no timestamps
 * but the commit's, modes reduced to 644 or 755.
 */
export const SOURCE_DIRS = ['firmware', 'hal', 'provisioning', 'image']
export const SOURCE_FILES = ['package.json', 'package-lock.json', 'README.md']

export interface BuildInput {
  source: string
  version: string
  securityVersion: number
  minUpgradeFrom: string
  addKeys?: string[]
  removeKeys?: string[]
  /** Files from a directory instead of the checkout (a test's own small product), all of them. */
  tree?: string
}

interface Entry extends ManifestFile {
  from: string
}

function fileEntry(root: string, path: string): Entry | undefined {
  const from = join(root, path)
  const st = lstatSync(from)
  if (!st.isFile()) return undefined // symlinks (node_modules/.bin) are not carried
  const hash = createHash('sha256')
  const fd = openSync(from, 'r')
  const chunk = Buffer.alloc(1 << 20)
  try {
    for (let n; (n = readSync(fd, chunk, 0, chunk.length, null));) hash.update(chunk.subarray(0, n))
  } finally {
    closeSync(fd)
  }
  return { path, from, size: st.size, sha256: hash.digest('hex'), mode: st.mode & 0o111 ? 0o755 : 0o644 }
}

function walk(root: string, dir: string, skipNested: boolean): string[] {
  const out: string[] = []
  for (const d of readdirSync(join(root, dir), { withFileTypes: true })) {
    const p = `${dir}/${d.name}`
    if (d.isDirectory()) {
      if (skipNested && d.name === 'node_modules') continue // nested packages are lock entries of their own
      out.push(...walk(root, p, skipNested))
    } else if (d.isFile()) out.push(p)
  }
  return out
}

/** The files of the bundle, sorted. */
export function collectFiles(input: BuildInput): Entry[] {
  let paths: string[]
  if (input.tree) paths = walk(input.tree, '.', false).map((p) => p.slice(2))
  else {
    const src = input.source
    paths = execFileSync('git', ['ls-files', '-z', '--', ...SOURCE_DIRS, ...SOURCE_FILES], { cwd: src, encoding: 'utf8' })
      .split('\0')
      .filter(Boolean)
    const lock = JSON.parse(readFileSync(join(src, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; optional?: boolean }> }
    for (const [key, p] of Object.entries(lock.packages)) {
      if (!key.startsWith('node_modules/') || p.dev) continue
      if (!existsSync(join(src, key))) {
        if (p.optional) continue
        throw halError('EBUILD_REFUSED', `${key} is in the lock but not installed: run npm ci first`)
      }
      paths.push(...walk(src, key, true))
    }
  }
  const root = input.tree ?? input.source
  return [...new Set(paths)]
    .sort()
    .map((p) => fileEntry(root, p))
    .filter((e): e is Entry => !!e)
}

export function gitFacts(source: string): { commit: string; time: string; clean: boolean } {
  const git = (...a: string[]) => execFileSync('git', a, { cwd: source, encoding: 'utf8' }).trim()
  return { commit: git('rev-parse', 'HEAD'), time: git('log', '-1', '--format=%cI'), clean: git('status', '--porcelain', '--untracked-files=no') === '' }
}

export function buildManifest(input: BuildInput, files: Entry[], facts: { commit: string; time: string }): { manifest: Manifest; bytes: Buffer } {
  const manifest: Manifest = {
    product: PRODUCT,
    version: input.version,
    securityVersion: input.securityVersion,
    minUpgradeFrom: input.minUpgradeFrom,
    buildTime: new Date(facts.time).toISOString(),
    sourceCommit: facts.commit,
    files: files.map(({ path, size, sha256, mode }) => ({ path, size, sha256, mode })),
    payloadBytes: files.reduce((a, f) => a + f.size, 0),
    ...(input.addKeys?.length ? { addKeys: input.addKeys } : {}),
    ...(input.removeKeys?.length ? { removeKeys: input.removeKeys } : {}),
  }
  checkManifest(manifest)
  return { manifest, bytes: Buffer.from(JSON.stringify(manifest)) }
}

/** Writes the bundle: header, manifest, signatures, then each file's bytes. */
export function writeBundle(out: string, manifestBytes: Buffer, signatures: Signature[], files: Entry[]): void {
  const fd = openSync(out, 'w', 0o644)
  try {
    const len = (n: number) => {
      const b = Buffer.alloc(4)
      b.writeUInt32BE(n)
      return b
    }
    const sigs = Buffer.from(JSON.stringify(signatures))
    for (const b of [MAGIC, len(manifestBytes.length), manifestBytes, len(sigs.length), sigs]) writeSync(fd, b)
    const chunk = Buffer.alloc(1 << 20)
    for (const f of files) {
      const inFd = openSync(f.from, 'r')
      try {
        let left = f.size
        for (let n; left > 0 && (n = readSync(inFd, chunk, 0, Math.min(chunk.length, left), null)); left -= n) writeSync(fd, chunk, 0, n)
        if (left !== 0) throw halError('EBUILD_REFUSED', `${f.path} changed while the bundle was built`)
      } finally {
        closeSync(inFd)
      }
    }
  } finally {
    closeSync(fd)
  }
}
