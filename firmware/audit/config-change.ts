import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from '../../hal/storage/files.ts'
import type { Component } from '../component.ts'
import type { Config } from '../config/load.ts'
import type { AuditTrail } from './trail.ts'

const SNAPSHOT = 'config-snapshot.json'

/** Leaf values by dotted path; arrays are leaves (a list changes as a whole). */
function flatten(value: unknown, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out)
  } else out[prefix] = value
  return out
}

/** The keys whose values differ, with their values before and after (absent keys as null). */
export function configDiff(before: unknown, after: unknown): { before: Record<string, unknown>; after: Record<string, unknown> } | undefined {
  const a = flatten(before)
  const b = flatten(after)
  const diff = { before: {} as Record<string, unknown>, after: {} as Record<string, unknown> }
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (JSON.stringify(a[key]) === JSON.stringify(b[key])) continue
    diff.before[key] = a[key] ?? null
    diff.after[key] = b[key] ?? null
  }
  return Object.keys(diff.after).length ? diff : undefined
}

/** Who made the version a box starts on, for the record of what changed between starts. */
export interface StartingVersion {
  number: number
  source: string
  author: string
  approver: string
  reason: string
}

/**
 * S7: each start compares the configuration the box runs on with the one the
 * previous start ran on and records any difference in the audit trail
 * (before/after per key, secrets removed by the trail), naming the version it
 * starts on and who made and approved it — then keeps the new one as the
 * reference. The first start records the whole configuration. (A change
 * approved on the admin page is recorded when it is approved too; keys that
 * wait for a start take effect here.)
 */
export class ConfigChangeAudit implements Component {
  readonly name = 'config-audit'
  readonly #config: Config
  readonly #trail: AuditTrail
  readonly #version: () => Promise<StartingVersion | undefined>

  constructor(deps: { config: Config; trail: AuditTrail; version?: () => Promise<StartingVersion | undefined> }) {
    this.#config = deps.config
    this.#trail = deps.trail
    this.#version = deps.version ?? (() => Promise.resolve(undefined))
  }

  async start(): Promise<void> {
    const file = join(this.#trail.dir, SNAPSHOT)
    const previous: unknown = await readFile(file, 'utf8').then(
      (t) => JSON.parse(t) as unknown,
      () => undefined,
    )
    const current = JSON.parse(JSON.stringify(this.#config)) as unknown
    const diff = previous === undefined ? { before: null, after: current } : configDiff(previous, current)
    if (!diff) return
    const v = await this.#version()
    const made = v && (v.source === 'file' || v.source === 'migration' ? v.author : `${v.author}${v.approver ? `, approved by ${v.approver}` : ''}`)
    this.#trail.emit({
      type: 'config.changed',
      who: made ?? 'configuration file',
      reason:
        (previous === undefined ? 'first start: the configuration the box runs on' : 'the configuration changed between starts') +
        (v ? ` (version ${v.number}: ${v.reason})` : ''),
      before: diff.before,
      after: diff.after,
    })
    // On disk in the trail before the reference moves: a crash in between records the change again, never loses it.
    await this.#trail.flush()
    writeFileAtomic(file, JSON.stringify(current))
  }

  async stop(): Promise<void> {}
}
