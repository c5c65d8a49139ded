import { createError } from '../box-errors.ts'

/**
 * A small typed schema language for the box's configuration: every key has a
 * type, a default and a description (STYLE: "config is data with a schema").
 * The same schema validates config files, fills defaults, types the result and
 * generates the reference in docs/configuration.md (firmware/config/reference.ts).
 */

export class ConfigError extends createError('ECONFIG_INVALID', 'ConfigError') {
  readonly key: string
  constructor(key: string, reason: string) {
    super(`config key "${key}": ${reason}`)
    this.key = key
  }
}

interface Base<T> {
  readonly kind: string
  readonly description: string
  readonly default: T
  /** Returns the validated value or throws ConfigError naming `key`. */
  parse(value: unknown, key: string): T
  /** Human-readable type for the reference. */
  readonly typeName: string
  /** The values a string may take, when it is one of a list (a form shows them as a choice). */
  readonly values?: readonly string[]
}

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
