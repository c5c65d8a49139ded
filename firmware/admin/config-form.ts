import { configDiff } from '../audit/config-change.ts'
import { ConfigError, parseConfig } from '../config/load.ts'
import { appliesAtOnce, schema } from '../config/schema.ts'
import { kindOf, shapeOf, type Field } from '../config/types.ts'

/**
 * The configuration form's data side (S7): the schema's keys as form fields,
 * a proposal from what the form sent (secrets left as they are unless a new
 * value was typed), and the keys a proposal changes.
 */
export type AnyField = Field<unknown>
export interface Leaf {
  key: string
  field: AnyField
}

export const SECRET = /(passwordHash|pinFile|passwordFile|tokenFile|keyFile)$/
export const UNCHANGED = '(unchanged)'

function leaves(shape: Record<string, AnyField>, prefix = ''): Leaf[] {
  return Object.entries(shape).flatMap(([k, f]) => {
    const key = prefix ? `${prefix}.${k}` : k
    return kindOf(f) === 'object' ? leaves(shapeOf(f)!, key) : [{ key, field: f }]
  })
}
export const LEAVES = leaves(shapeOf(schema)!)

export const get = (o: unknown, key: string): unknown =>
  key.split('.').reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), o)
export function set(o: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.')
  let at = o
  for (const p of parts.slice(0, -1)) at = (at[p] && typeof at[p] === 'object' ? at[p] : (at[p] = {})) as Record<string, unknown>
  at[parts.at(-1)!] = value
}

/** A list of objects with its secrets replaced by a marker, for showing. */
export function maskItems(value: unknown): unknown {
  if (!Array.isArray(value)) return value
  return value.map((item: unknown) =>
    item && typeof item === 'object' ? Object.fromEntries(Object.entries(item).map(([k, v]) => [k, SECRET.test(k) && v ? UNCHANGED : v])) : item,
  )
}

/** The configuration a form describes: the one in force with every value that differs from its effective value set. */
export function configFromForm(form: Record<string, string | undefined>, base: unknown): unknown {
  const effective = parseConfig(base ?? {})
  const raw = structuredClone(base ?? {}) as Record<string, unknown>
  for (const { key, field } of LEAVES) {
    const given = form[`c:${key}`]
    if (given === undefined) continue
    const current = get(effective, key)
    let value: unknown
    const kind = kindOf(field)
    if (kind === 'boolean') value = given === 'true'
    else if (kind === 'integer') value = given.trim() === '' ? current : Number(given)
    else if (kind === 'list' || kind === 'records') {
      try {
        value = JSON.parse(given) as unknown
      } catch {
        throw new ConfigError(key, 'is not valid JSON')
      }
      // Secrets left as shown keep their value: matched by the item's name, else by position.
      if (Array.isArray(value) && Array.isArray(current))
        value = value.map((item: unknown, i) => {
          if (!item || typeof item !== 'object') return item
          const named = (item as { name?: unknown }).name
          const list = current as Record<string, unknown>[]
          const before = list.find((c) => named !== undefined && c.name === named) ?? list[i]
          return Object.fromEntries(Object.entries(item).map(([k, v]) => [k, v === UNCHANGED ? (before as Record<string, unknown>)?.[k] : v]))
        })
    } else value = SECRET.test(key) && given === '' ? current : given
    if (JSON.stringify(value) !== JSON.stringify(current)) set(raw, key, value)
  }
  return raw
}

/** The changed keys between two configurations, secrets masked, each marked as applying now or at the next restart. */
export function changes(before: unknown, after: unknown): { key: string; before: unknown; after: unknown; now: boolean }[] {
  const d = configDiff(parseConfig(before ?? {}), parseConfig(after ?? {}))
  if (!d) return []
  const show = (k: string, v: unknown) => (SECRET.test(k) ? '(secret)' : JSON.stringify(maskItems(v)))
  return Object.keys(d.after).map((key) => ({ key, before: show(key, d.before[key]), after: show(key, d.after[key]), now: appliesAtOnce(key) }))
}
