import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import fc from 'fast-check'
import t from 'tap'
import { certificateParts, children, keyUsage, read } from '../../../hal/crypto/der-read.ts'
import { tempDir } from '../../helpers/box.ts'
import { opensslSelfSigned } from '../../helpers/hsm.ts'

t.test("certificate parts against openssl and Node's X509Certificate", async (t) => {
  const dir = tempDir(t)
  const usages = ['digitalSignature,nonRepudiation', 'keyEncipherment', 'digitalSignature,keyCertSign,cRLSign']
  for (const [i, usage] of usages.entries()) {
    const { cert } = await opensslSelfSigned(dir, `c${i}`, {
      key: 'ec',
      subject: `/CN=statements ${i}/O=Bank Ltd/C=TW`,
      days: 30,
      ext: [`keyUsage=critical,${usage}`, 'subjectAltName=email:statements@bank.example'],
    })
    const x = new X509Certificate(readFileSync(cert))
    const parts = certificateParts(x.raw)
    t.equal(parts.serial.content.toString('hex').replace(/^00/, '').toUpperCase(), x.serialNumber.replace(/^00/, ''), 'serial')
    t.ok(x.publicKey.export({ type: 'spki', format: 'der' }).equals(parts.spki.bytes), 'subjectPublicKeyInfo, byte for byte')
    t.ok(parts.extensions.get('2.5.29.15')?.critical, 'keyUsage is critical')
    t.same([...keyUsage(parts)!].sort(), usage.split(',').sort(), `keyUsage ${usage}`)
    t.ok(parts.extensions.has('2.5.29.17'), 'subjectAltName present')
  }
})

t.test('hostile DER: an error, never a node that reaches past the data', async (t) => {
  t.throws(() => read(Buffer.from([0x30, 0x82, 0x01])), /DER/, 'long-form length cut short')
  t.throws(() => read(Buffer.from([0x30, 0x05, 0x01])), /DER/, 'content cut short')
  t.throws(() => read(Buffer.from([0x30, 0x85, 1, 2, 3, 4, 5])), /DER/, 'a length of five bytes')
  const inputs = fc.sample(
    fc.uint8Array({ maxLength: 24 }).map((a) => Buffer.from(a)),
    { numRuns: 5000, seed: 693 },
  )
  const bad: string[] = []
  for (const b of inputs) {
    try {
      const walk = (n: ReturnType<typeof read>, depth: number): void => {
        if (!(n.end <= b.length && n.contentStart <= n.end && Number.isInteger(n.end))) throw new Error(`node past the data: ${b.toString('hex')}`)
        if (depth < 4 && n.tag & 0x20) for (const c of children(n)) walk(c, depth + 1)
      }
      walk(read(b), 0)
    } catch (err) {
      if (!/^DER: /.test((err as Error).message)) bad.push((err as Error).message)
    }
  }
  t.same(bad.slice(0, 3), [], `${inputs.length} random inputs`)
})
