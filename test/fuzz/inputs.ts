import fc from 'fast-check'
import { makeSelfSignedServerCert } from '../../hal/crypto/selfsigned.ts'

/**
 * The box's hand-written parsers of outside input, as fuzz targets (STYLE:
 * KumoMTA fuzzes its protocol parsers): each gets hostile input and may only
 * answer or fail with its own coded error, and each has a worst-case input
 * family for the doubling test (time linear in the input size).
 */
export interface Target<T> {
  name: string
  input: fc.Arbitrary<T>
  /** Runs the parser; throws only for a failure that is not the parser's own coded answer. */
  run(input: T): void
  /** Adversarial input of about `n` bytes, for timing. */
  worst(n: number): T
  /** Compares with an independent reader (libmime): not timed in the growth test, which its parser's own target is. */
  differential?: boolean
  /** Size for the doubling test when the default (512 KiB) is far beyond what the parser ever reads. */
  size?: number
  /** Inputs per property run when the default (400 in the suite) costs too much: the other reader is a process per input. */
  runs?: number
}

/** Byte strings made of MIME-ish tokens, so that fuzzing reaches past the first check. */
export const tokens = (words: readonly string[], max = 200) =>
  fc.array(fc.oneof(fc.constantFrom(...words), fc.string({ maxLength: 8 })), { maxLength: max }).map((ws) => ws.join(''))

/** A known-good input with a few bytes changed, inserted or cut. */
export function mutated(seed: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  return fc.tuple(seed, fc.array(fc.tuple(fc.nat(), fc.nat(255), fc.constantFrom('flip', 'insert', 'cut')), { maxLength: 6 })).map(([b, edits]) => {
    let out = Buffer.from(b)
    for (const [pos, byte, how] of edits) {
      if (out.length === 0) break
      const at = pos % out.length
      if (how === 'flip') out[at] = byte
      else if (how === 'insert') out = Buffer.concat([out.subarray(0, at), Buffer.from([byte]), out.subarray(at)])
      else out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1 + (byte % 16))])
    }
    return out
  })
}

export const coded = (fn: () => void, ok: (e: unknown) => boolean) => {
  try {
    fn()
  } catch (err) {
    if (!ok(err)) throw err
  }
}

export const CERT = Buffer.from(makeSelfSignedServerCert({ hostname: 'fuzz.example', addresses: ['127.0.0.1'] }).certificate.raw)
/** A small encrypted PDF written by hand, with its cross-reference offsets computed. */
export const PDF = (() => {
  const objs = ['1 0 obj << /Type /Catalog >> endobj\n', '2 0 obj << /Filter /Standard /V 2 /R 3 /O (o) /U (u) /P -4 >> endobj\n']
  let text = '%PDF-1.4\n'
  const offsets = objs.map((o) => {
    const at = text.length
    text += o
    return at
  })
  const xref = text.length
  text += `xref\n0 3\n0000000000 65535 f \n${offsets.map((o) => `${String(o).padStart(10, '0')} 00000 n \n`).join('')}trailer << /Root 1 0 R /Size 3 /Encrypt 2 0 R >>\nstartxref\n${xref}\n%%EOF\n`
  return Buffer.from(text, 'latin1')
})()
export const ZIP = Buffer.from(
  'UEsDBAoACQAAAD0Wel2Xo14WFwAAAAsAAAANABwAc3RhdGVtZW50LnBkZlVUCQADVZ4Ha1WeB2t1eAsAAQQAAAAABAAAAAC9u0RCYEwikIxNjfJJgN6jmR2AbXocqFBLBwiXo14WFwAAAAsAAABQSwECHgMKAAkAAAA9Fnpdl6NeFhcAAAALAAAADQAYAAAAAAABAAAApIEAAAAAc3RhdGVtZW50LnBkZlVUBQADVZ4Ha3V4CwABBAAAAAAEAAAAAFBLBQYAAAAAAQABAFMAAABuAAAAAAA=',
  'base64',
)

/** A directory of n/46 empty entries, all walked before the first local header is looked at. */
export function zipWorst(n: number): Buffer {
  const cd = Buffer.alloc(Math.floor(n / 46) * 46)
  for (let i = 0; i < cd.length; i += 46) cd.writeUInt32LE(0x02014b50, i)
  const end = Buffer.alloc(22)
  end.writeUInt32LE(0x06054b50, 0)
  end.writeUInt16LE(0xfffe, 8)
  end.writeUInt16LE(0xfffe, 10)
  end.writeUInt32LE(cd.length, 12)
  return Buffer.concat([cd, end])
}

/** Keeps each target's input type to itself while they share one list. */
export const target = <T>(x: Target<T>) => x as unknown as Target<unknown>
