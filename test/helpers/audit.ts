import type { KeyObject } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { AuditTrail } from '../../firmware/audit/trail.ts'
import type { BoxEvent } from '../../firmware/events.ts'
import { CHECKPOINT_KEY_LABEL } from '../../firmware/keys/labels.ts'
import type { Config } from '../../firmware/config/load.ts'
import { BOX_KEYS } from '../../firmware/keys/manifest.ts'
import type { Hsm } from '../../hal/hsm/index.ts'
import { testConfig } from './box.ts'
import { devHsm } from './hsm.ts'
import { logSink } from './logs.ts'

type T = { teardown(fn: () => unknown): void }

/** A queued event, numbered. */
export const queued = (i: number): BoxEvent => ({ type: 'spool.queued', id: `Q${i}`, epoch: 'e1', bytes: 1000 + i })

/** The plain (uncompressed) segment file of the trail in `dir`. */
export const segment = (dir: string) =>
  join(
    dir,
    readdirSync(dir).find((n) => /^trail-.*\.jsonl$/.test(n))!,
  )

export interface AuditRig {
  trail: AuditTrail
  hsm: Hsm
  config: Config
  clock: { value: number; now(): number }
  publicKey: KeyObject
  /** A new trail over the same directory and token (a restart). */
  restart(): Promise<AuditTrail>
  records(): Record<string, unknown>[]
}

/** An audit trail on a fresh SoftHSM token, with a settable clock. */
export async function auditRig(t: T, audit: Record<string, unknown> = {}, extra: Record<string, unknown> = {}, shared?: Hsm): Promise<AuditRig> {
  // One PKCS#11 module per process: a second box in the same test shares the token.
  const hsm = shared ?? (await devHsm(t)).hsm
  if (!shared) await hsm.ensureKeys(BOX_KEYS)
  const config = await testConfig(t, { audit: { flushMs: 5, ...audit }, ...extra })
  const clock = { value: Date.parse('2026-11-22T08:00:00Z'), now: () => clock.value }
  const make = async () => {
    const trail = new AuditTrail({ config, log: logSink().log, hsm, clock })
    await trail.start()
    t.teardown(() => trail.stop())
    return trail
  }
  const rig: AuditRig = {
    trail: await make(),
    hsm,
    config,
    clock,
    publicKey: await hsm.keys.publicKey(CHECKPOINT_KEY_LABEL),
    restart: make,
    records: () =>
      trailText(rig.trail.dir)
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  }
  return rig
}

/** Every record line of the trail in `dir`, decompressed, in order. */
export function trailText(dir: string): string {
  return readdirSync(dir)
    .filter((n) => /^trail-.*\.jsonl(\.gz)?$/.test(n))
    .sort()
    .map((n) => {
      const raw = readFileSync(join(dir, n))
      return n.endsWith('.gz') ? gunzipSync(raw).toString() : raw.toString()
    })
    .join('')
}

/** A trail of `n` queued events written in groups of ten, each group with its checkpoint. */
export async function filled(t: T, n: number, audit: Record<string, unknown> = {}) {
  const rig = await auditRig(t, { checkpointEvery: 10, ...audit })
  for (let i = 1; i <= n; i++) {
    rig.trail.emit(queued(i))
    // Written in groups, as a running box does; each group of 10 gets its checkpoint.
    if (i % 10 === 0) await rig.trail.flush().then(() => rig.trail.checkpoint())
  }
  await rig.trail.flush()
  await rig.trail.checkpoint()
  return rig
}
