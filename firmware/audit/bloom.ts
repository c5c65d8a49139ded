/**
 * A Bloom filter over the search keys of one finished audit day (queue ids,
 * statement ids, recipient HMACs), so a search skips the days that cannot
 * hold what it looks for instead of reading them. About 1 % false positives
 * at the planned size; never a false negative. It is a search aid beside the
 * trail, not part of it: losing or damaging one only makes a search read
 * that day (a filter that does not parse is ignored).
 */
const MAGIC = Buffer.from('SGBLOOM1')
const HEADER = MAGIC.length + 8 // magic, k (u32), bit count (u32)
const BITS_PER_KEY = 10 // with k = 7: ~0.8 % false positives
const K = 7

export class BloomFilter {
  readonly bits: number
  readonly k: number
  readonly #words: Uint32Array

  constructor(bits: number, k = K, words?: Uint32Array) {
    this.bits = Math.max(64, Math.ceil(bits / 32) * 32)
    this.k = k
    this.#words = words ?? new Uint32Array(this.bits / 32)
  }

  /** A filter planned for about `keys` distinct keys. */
  static forKeys(keys: number): BloomFilter {
    return new BloomFilter(Math.max(1024, keys) * BITS_PER_KEY)
  }

  add(key: string): void {
    const [h1, h2] = hashes(key)
    for (let i = 0; i < this.k; i++) {
      const bit = (h1 + Math.imul(i, h2)) >>> 0
      const b = bit % this.bits
      this.#words[b >>> 5]! |= 1 << (b & 31)
    }
  }

  has(key: string): boolean {
    const [h1, h2] = hashes(key)
    for (let i = 0; i < this.k; i++) {
      const bit = (h1 + Math.imul(i, h2)) >>> 0
      const b = bit % this.bits
      if ((this.#words[b >>> 5]! & (1 << (b & 31))) === 0) return false
    }
    return true
  }

  serialize(): Buffer {
    const out = Buffer.alloc(HEADER + this.#words.byteLength)
    MAGIC.copy(out, 0)
    out.writeUInt32LE(this.k, MAGIC.length)
    out.writeUInt32LE(this.bits, MAGIC.length + 4)
    Buffer.from(this.#words.buffer, this.#words.byteOffset, this.#words.byteLength).copy(out, HEADER)
    return out
  }

  /** The filter in `buf`, or undefined when it is not one (a damaged file is ignored, not trusted). */
  static parse(buf: Buffer): BloomFilter | undefined {
    if (buf.length < HEADER || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return undefined
    const k = buf.readUInt32LE(MAGIC.length)
    const bits = buf.readUInt32LE(MAGIC.length + 4)
    if (k < 1 || k > 32 || bits % 32 !== 0 || buf.length !== HEADER + bits / 8) return undefined
    const words = new Uint32Array(bits / 32)
    Buffer.from(words.buffer).set(buf.subarray(HEADER))
    return new BloomFilter(bits, k, words)
  }
}

/** Search keys of one audit record. */
export function recordKeys(r: { id?: unknown; statementId?: unknown; recipients?: unknown }): string[] {
  const keys: string[] = []
  if (typeof r.id === 'string') keys.push(`i:${r.id}`)
  if (typeof r.statementId === 'string') keys.push(`s:${r.statementId}`)
  if (Array.isArray(r.recipients)) for (const x of r.recipients as { h?: unknown }[]) if (typeof x?.h === 'string') keys.push(`r:${x.h}`)
  return keys
}

/** Two independent 32-bit hashes of a string (FNV-1a and a murmur3-style mix), for double hashing. */
function hashes(key: string): [number, number] {
  let a = 0x811c9dc5
  let b = 0x9747b28c
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i)
    a = Math.imul(a ^ c, 0x01000193)
    b = Math.imul(b ^ c, 0x5bd1e995)
    b ^= b >>> 15
  }
  b = Math.imul(b ^ (b >>> 13), 0xc2b2ae35)
  b ^= b >>> 16
  return [a >>> 0, (b | 1) >>> 0]
}
