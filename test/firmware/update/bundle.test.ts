import { closeSync, openSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import t from 'tap'
import { BundleError, compareVersions, extractBundle, openBundle, pathProblem, trustedKeys } from '../../../firmware/update/bundle.ts'
import { tempDir } from '../../helpers/box.ts'
import { craftBundle, vendorKey } from '../../helpers/bundles.ts'

t.test('paths stay inside the slot', async (t) => {
  for (const ok of ['firmware/main.ts', 'node_modules/@fastify/helmet/index.js', 'a']) t.equal(pathProblem(ok), undefined, ok)
  for (const bad of ['', '/etc/passwd', '../x', 'a/../../x', 'a//b', './a', 'a/.', 'a\\b', 'a\u0000b', 'a/'.repeat(600)])
    t.ok(pathProblem(bad), JSON.stringify(bad.slice(0, 20)))
})

t.test('versions compare as numbers, and only major.minor.patch is a version', async (t) => {
  t.ok(compareVersions('1.10.0', '1.9.9') > 0)
  t.equal(compareVersions('2.0.0', '2.0.0'), 0)
  t.throws(() => compareVersions('1.0', '1.0.0'), BundleError)
  t.throws(() => compareVersions('1.0.0-rc1', '1.0.0'), BundleError)
})

t.test(
  'property: any bytes that are not a bundle signed by a trusted key are refused with a BundleError (by the header, the signature or a hash), never another failure',
  async (t) => {
    const dir = tempDir(t)
    const k = vendorKey()
    const good = craftBundle(dir, 'good', k.priv)
    const bytes = (await import('node:fs')).readFileSync(good)
    const keys = trustedKeys([k.pub])
    const payload = (buf: Buffer, offset: number) => buf.subarray(offset)
    let original: { manifest: string; payload: Buffer } | undefined
    let n = 0
    const check = (buf: Buffer) => {
      const p = join(dir, 'x')
      writeFileSync(p, buf)
      const fd = openSync(p, 'r')
      try {
        const b = openBundle(fd, statSync(p).size, keys)
        const out = join(dir, `x-${n++}`)
        extractBundle(fd, b, out)
        rmSync(out, { recursive: true })
        const got = { manifest: JSON.stringify(b.manifest), payload: payload(buf, b.payloadOffset) }
        original ??= got
        // Opened: then it says exactly what the vendor signed (base64 may spell one signature two ways).
        return got.manifest === original.manifest && got.payload.equals(original.payload)
      } catch (err) {
        return err instanceof BundleError
      } finally {
        closeSync(fd)
      }
    }
    t.ok(check(bytes), 'the real one opens')
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
          // The real bundle with bytes changed, cut or added anywhere.
          fc.tuple(fc.nat(bytes.length - 1), fc.integer({ min: 1, max: 255 })).map(([at, x]) => {
            const b = Buffer.from(bytes)
            b.writeUInt8(b.readUInt8(at) ^ x, at)
            return b
          }),
          fc.nat(bytes.length - 1).map((n) => bytes.subarray(0, n)),
          fc.uint8Array({ minLength: 1, maxLength: 20 }).map((b) => Buffer.concat([bytes, Buffer.from(b)])),
        ),
        check,
      ),
      { numRuns: 400 },
    )
  },
)
