import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { exportTrail } from '../../../firmware/audit/export.ts'
import { auditRig } from '../../helpers/audit.ts'
import { tempDir } from '../../helpers/box.ts'
import { run } from '../../helpers/hsm.ts'

/** A trail over two days with checkpoints, exported from the second day on. */
async function bundle(t: Test) {
  const rig = await auditRig(t, { checkpointEvery: 5 })
  for (let day = 0; day < 3; day++) {
    for (let i = 0; i < 12; i++) rig.trail.emit({ type: 'spool.queued', id: `D${day}-${i}`, epoch: 'e', bytes: i })
    await rig.trail.flush()
    await rig.trail.checkpoint()
    rig.clock.value += 86_400_000
  }
  await rig.trail.stop()
  const out = join(tempDir(t), 'bundle')
  const r = await exportTrail(rig.trail.dir, out, { from: '2026-11-23' })
  return { rig, out, r }
}

const sh = (dir: string) =>
  run('sh', [join(dir, 'verify.sh')]).then(
    (r) => ({ code: 0, out: r.stdout + r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
  )

function resum(dir: string): void {
  const names = readdirSync(dir)
    .filter((n) => n !== 'SHA256SUMS')
    .sort()
  writeFileSync(
    join(dir, 'SHA256SUMS'),
    names
      .map(
        (n) =>
          `${createHash('sha256')
            .update(readFileSync(join(dir, n)))
            .digest('hex')}  ${n}\n`,
      )
      .join(''),
  )
}

t.test('S6: an exported range verifies on its own with sh, gzip, sha256sum and openssl', async (t) => {
  const { out, r } = await bundle(t)
  t.same(readdirSync(out).sort(), [
    'SHA256SUMS',
    'VERIFY.md',
    'anchor.json',
    'checkpoint-key.pem',
    'checkpoints.jsonl',
    'trail-2026-11-23.jsonl.gz',
    'trail-2026-11-24.jsonl',
    'verify.sh',
  ])
  t.equal(r.firstSeq, 14, 'starts after the first day (audit.started + 12 records)')
  t.equal(r.lastSeq, 37)
  const res = await sh(out)
  t.equal(res.code, 0, res.out)
  t.match(res.out, /^OK: records up to seq 37 form an unbroken chain; \d+ signed checkpoints match it, the last at seq 37/m)
})

t.test("S6: the bundle's verify.sh names a changed record even when the checksums were redone", async (t) => {
  const { out } = await bundle(t)
  const file = join(out, 'trail-2026-11-24.jsonl')
  writeFileSync(file, readFileSync(file, 'utf8').replace('"id":"D2-3"', '"id":"D2-X"'))
  resum(out)
  const res = await sh(out)
  t.equal(res.code, 1)
  t.match(res.out, /FAIL: record 29 does not match the link in record 30/)
})

t.test('S6: verify.sh refuses a checkpoint that the box key did not sign', async (t) => {
  const { out } = await bundle(t)
  const file = join(out, 'checkpoints.jsonl')
  writeFileSync(file, readFileSync(file, 'utf8').replace(/"time":"2026-11-2/, '"time":"2025-11-2'))
  resum(out)
  const res = await sh(out)
  t.equal(res.code, 1)
  t.match(res.out, /FAIL: checkpoint for seq \d+: invalid signature/)
})
