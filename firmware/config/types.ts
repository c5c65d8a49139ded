import { createError } from '../box-errors.ts'

/**
 * A small typed schema language for the box's configuration: every key has a
 * type, a default and a description (STYLE: "config is data with a schema").
 * The same schema validates config files, fills defaults, types the result,
 * generates the reference in docs/configuration.md (firmware/config/reference.ts)
 * and is published as JSON Schema (`jsonSchemaOf`, docs/configuration.schema.json),
 * which Python's jsonschema holds this parser to in the tests.
 *
 * #34 asked for TypeBox and Ajv here. Built and measured (2026-12-07): loading
 * them costs every tool that reads the configuration 22 + 11 MB RSS (the daemon
 * has both already, for the admin page's routes), and Ajv's compiled validator
 * for this schema 15–25 MB more in every process, the daemon included — the
 * ledger export went from 131 to 189 MB against its 150 MB mark — to check one
 * small file. This parser is linear, states its errors in the box's words and
 * gives the same JSON Schema; an independent validator holds the two together
 * (test/firmware/config/types.test.ts).
 */

export class ConfigError extends createError('ECONFIG_INVALID', 'ConfigError') {
  readonly key: string
  constructor(key: string, reason: string) {
    super(`config key "${key}": ${reason}`)
    this.key = key
  }
}

interface Base<T> {
  readonly kind: FieldKind
  readonly description: string
  readonly default: T
  /** Returns the validated value or throws ConfigError naming `key`. */
  parse(value: unknown, key: string): T
  /** Human-readable type for the reference. */
  readonly typeName: string
  /** The values a string may take, when it is one of a list (a form shows them as a choice). */
  readonly values?: readonly string[]
  /** The key as JSON Schema (draft-07): what `parse` checks, less the checks in code. */
  readonly json: Record<string, unknown>
}

/** What a form or the reference shows a key as. */
export type FieldKind = 'string' | 'integer' | 'boolean' | 'list' | 'records' | 'object'

export type Field<T> = Base<T>
export type Infer<F> = F extends Base<infer T> ? T : never

type Opts<T> = { default: T; description: string }

function fail(key: string, reason: string): never {
  throw new ConfigError(key, reason)
}

export function str(
  o: Opts<string> & { pattern?: RegExp; oneOf?: readonly string[]; nonEmpty?: boolean; check?: (v: string) => string | undefined; typeName?: string },
): Field<string> {
  return {
    kind: 'string',
    typeName: o.typeName ?? (o.oneOf ? o.oneOf.map((v) => `"${v}"`).join(' \\| ') : 'string'),
    ...(o.oneOf ? { values: o.oneOf } : {}),
    description: o.description,
    default: o.default,
    json: {
      type: 'string',
      default: o.default,
      description: o.description,
      ...(o.nonEmpty ? { minLength: 1 } : {}),
      ...(o.oneOf ? { enum: [...o.oneOf] } : {}),
      ...(o.pattern ? { pattern: o.pattern.source } : {}),
    },
    parse(v, key) {
      if (typeof v !== 'string') fail(key, `expected a string, got ${describe(v)}`)
      if (o.nonEmpty && v.length === 0) fail(key, 'must not be empty')
      if (o.oneOf && !o.oneOf.includes(v)) fail(key, `must be one of ${o.oneOf.join(', ')}, got "${v}"`)
      if (o.pattern && !o.pattern.test(v)) fail(key, `"${v}" does not match ${o.pattern}`)
      const problem = o.check?.(v)
      if (problem) fail(key, problem)
      return v
    },
  }
}

export function oneOf<const V extends readonly string[]>(values: V, o: Opts<V[number]>): Field<V[number]> {
  return str({ ...o, oneOf: values })
}

export function int(o: Opts<number> & { min?: number; max?: number; typeName?: string }): Field<number> {
  const range = `${o.min ?? '-∞'}…${o.max ?? '∞'}`
  return {
    kind: 'integer',
    typeName: o.typeName ?? `integer (${range})`,
    description: o.description,
    default: o.default,
    json: {
      type: 'integer',
      default: o.default,
      description: o.description,
      ...(o.min !== undefined ? { minimum: o.min } : {}),
      ...(o.max !== undefined ? { maximum: o.max } : {}),
    },
    parse(v, key) {
      if (typeof v !== 'number' || !Number.isInteger(v)) fail(key, `expected an integer, got ${describe(v)}`)
      if ((o.min !== undefined && v < o.min) || (o.max !== undefined && v > o.max)) fail(key, `${v} is outside ${range}`)
      return v
    },
  }
}

export function bool(o: Opts<boolean>): Field<boolean> {
  return {
    kind: 'boolean',
    typeName: 'boolean',
    description: o.description,
    default: o.default,
    json: { type: 'boolean', default: o.default, description: o.description },
    parse(v, key) {
      if (typeof v !== 'boolean') fail(key, `expected true or false, got ${describe(v)}`)
      return v
    },
  }
}

export function list<T>(item: Field<T>, o: Opts<T[]> & { unique?: boolean }): Field<readonly T[]> {
  return {
    kind: 'list',
    typeName: `list of ${item.typeName}`,
    description: o.description,
    default: o.default,
    json: { type: 'array', items: item.json, default: o.default, description: o.description },
    parse(v, key) {
      if (!Array.isArray(v)) fail(key, `expected a list, got ${describe(v)}`)
      return v.map((x, i) => item.parse(x, `${key}[${i}]`))
    },
  }
}

export type Shape = { readonly [k: string]: Field<unknown> }
export type InferShape<S extends Shape> = { readonly [K in keyof S]: Infer<S[K]> }

/**
 * An object with known keys. Unknown keys are refused (a typo in a config file
 * must stop start-up, not silently fall back to a default).
 */
export function obj<S extends Shape>(shape: S, description = ''): Field<InferShape<S>> & { shape: S } {
  const defaults = Object.fromEntries(Object.entries(shape).map(([k, f]) => [k, f.default])) as InferShape<S>
  return {
    kind: 'object',
    typeName: 'object',
    description,
    default: defaults,
    shape,
    json: objectJson(shape, [], { default: defaults, description }),
    parse(v, key) {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(key, `expected an object, got ${describe(v)}`)
      const input = v as Record<string, unknown>
      for (const k of Object.keys(input)) {
        if (!(k in shape)) fail(join(key, k), 'unknown key')
      }
      const out: Record<string, unknown> = {}
      for (const [k, f] of Object.entries(shape)) {
        out[k] = k in input ? f.parse(input[k], join(key, k)) : f.default
      }
      return out as InferShape<S>
    },
  }
}

/** A list of objects whose items have no defaults of their own (accounts, routes…). */
export function records<S extends Shape>(
  shape: S,
  o: Opts<InferShape<S>[]> & { required: readonly (keyof S & string)[] },
): Field<readonly InferShape<S>[]> & { itemShape: S; required: readonly string[] } {
  const item = obj(shape)
  return {
    kind: 'records',
    itemShape: shape,
    required: o.required,
    typeName: `list of { ${Object.keys(shape).join(', ')} }`,
    description: o.description,
    default: o.default,
    json: { type: 'array', items: objectJson(shape, o.required, {}), default: o.default, description: o.description },
    parse(v, key) {
      if (!Array.isArray(v)) fail(key, `expected a list, got ${describe(v)}`)
      return v.map((x, i) => {
        const k = `${key}[${i}]`
        if (x && typeof x === 'object') {
          for (const r of o.required) if (!(r in x)) fail(`${k}.${r}`, 'is required')
        }
        return item.parse(x, k)
      })
    },
  }
}

/** An object's JSON Schema: only these keys, those in `required` present (and without a default: it would hide their absence). */
function objectJson(shape: Shape, required: readonly string[], options: Record<string, unknown>): Record<string, unknown> {
  const properties = Object.fromEntries(
    Object.entries(shape).map(([k, f]) => {
      if (!required.includes(k)) return [k, f.json]
      const { default: _unused, ...rest } = f.json
      return [k, rest]
    }),
  )
  return { type: 'object', properties, ...(required.length ? { required: [...required] } : {}), additionalProperties: false, ...options }
}

/** `raw` checked against `schema` with its defaults filled in (a new value; `raw` is not changed); a ConfigError names the first key that is wrong and why. */
export const parseWith = <T>(schema: Field<T>, raw: unknown): T => schema.parse(raw, '')

/** The schema as a JSON Schema document (draft-07) others can check a file against, without the box. */
export function jsonSchemaOf(schema: Field<unknown>, title: string): Record<string, unknown> {
  const { default: _unused, ...root } = schema.json
  return { $schema: 'http://json-schema.org/draft-07/schema#', title, ...root }
}

type AnyField = Field<unknown> & { shape?: Record<string, Field<unknown>>; itemShape?: Record<string, Field<unknown>>; required?: readonly string[] }

export const kindOf = (f: Field<unknown>): FieldKind => f.kind
/** The keys of an object, or of each item of a list of objects. */
export const shapeOf = (f: Field<unknown>): Record<string, Field<unknown>> | undefined => (f as AnyField).shape ?? (f as AnyField).itemShape
/** The keys an item of a list of objects must have. */
export const requiredOf = (f: Field<unknown>): readonly string[] => (f as AnyField).required ?? []
/** The values a string may take, when it is one of a list (a form shows them as a choice). */
export const valuesOf = (f: Field<unknown>): readonly string[] | undefined => f.values
/** The type as the reference names it. */
export const typeNameOf = (f: Field<unknown>): string => f.typeName

function join(key: string, k: string): string {
  return key ? `${key}.${k}` : k
}

function describe(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'string') return `"${v}"`
  // Config is JSON: what is left is a number or a boolean.
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`
}
