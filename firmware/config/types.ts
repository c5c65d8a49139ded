import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import { Type, type TSchema } from 'typebox'
import { createError } from '../box-errors.ts'

/**
 * The box's configuration schema: TypeBox builds it as JSON Schema (every key a
 * type, a `default` and a `description`; STYLE: "config is data with a
 * schema"), Ajv validates a file against it and fills the defaults, the reference
 * in docs/configuration.md and the admin page's form read it (reference.ts,
 * admin/config-form.ts). The builders below keep the sections short and carry
 * the value type for `Infer`; the two things JSON Schema does not say — a check
 * in code (a CIDR, a password hash) and the reference's name for a type — sit
 * beside it, keyed by the schema object.
 */

export class ConfigError extends createError('ECONFIG_INVALID', 'ConfigError') {
  readonly key: string
  constructor(key: string, reason: string) {
    super(`config key "${key}": ${reason}`)
    this.key = key
  }
}

declare const VALUE: unique symbol

/** A key of the schema: its JSON Schema, and (in types only) the value it admits. */
export type Field<T> = TSchema & { readonly default: T; readonly description: string; readonly [VALUE]?: T }
export type Infer<F> = F extends { readonly [VALUE]?: infer T } ? Exclude<T, undefined> : never

type Opts<T> = { default: T; description: string }
type Schema = Record<string, unknown>
/** A field's JSON Schema keywords, for reading. */
const json = (f: Field<unknown>) => f as unknown as Schema

/** What JSON Schema cannot say: a check in code, and the reference's name for the type. */
const CHECKS = new WeakMap<object, (v: string) => string | undefined>()
const TYPE_NAMES = new WeakMap<object, string>()

function field<T>(schema: TSchema, typeName?: string, check?: (v: string) => string | undefined): Field<T> {
  if (typeName) TYPE_NAMES.set(schema, typeName)
  if (check) CHECKS.set(schema, check)
  return schema as Field<T>
}

export function str(
  o: Opts<string> & { pattern?: RegExp; oneOf?: readonly string[]; nonEmpty?: boolean; check?: (v: string) => string | undefined; typeName?: string },
): Field<string> {
  const s = Type.String({
    default: o.default,
    description: o.description,
    ...(o.nonEmpty ? { minLength: 1 } : {}),
    ...(o.oneOf ? { enum: [...o.oneOf] } : {}),
    ...(o.pattern ? { pattern: o.pattern.source } : {}),
  })
  return field(s, o.typeName, o.check)
}

export function oneOf<const V extends readonly string[]>(values: V, o: Opts<V[number]>): Field<V[number]> {
  return str({ ...o, oneOf: values })
}

export function int(o: Opts<number> & { min?: number; max?: number; typeName?: string }): Field<number> {
  const s = Type.Integer({
    default: o.default,
    description: o.description,
    ...(o.min !== undefined ? { minimum: o.min } : {}),
    ...(o.max !== undefined ? { maximum: o.max } : {}),
  })
  return field(s, o.typeName)
}

export function bool(o: Opts<boolean>): Field<boolean> {
  return field(Type.Boolean({ default: o.default, description: o.description }))
}

export function list<T>(item: Field<T>, o: Opts<T[]>): Field<readonly T[]> {
  return field(Type.Array(item, { default: o.default, description: o.description }))
}

export type Shape = { readonly [k: string]: Field<unknown> }
export type InferShape<S extends Shape> = { readonly [K in keyof S]: Infer<S[K]> }

/** The JSON Schema of an object of `shape`: only these keys, those in `required` present, the others filled from their defaults. */
function objectOf(shape: Shape, required: readonly string[], options: Schema): TSchema {
  const properties = Object.fromEntries(Object.entries(shape).map(([k, f]) => [k, required.includes(k) ? withoutDefault(f) : optional(f)]))
  return Type.Object(properties, { additionalProperties: false, ...options })
}

/** TypeBox marks a key optional on a copy of its schema: the copy keeps the field's check and type name. */
const optional = (f: Field<unknown>): Field<unknown> => field(Type.Optional(f), TYPE_NAMES.get(f), CHECKS.get(f))

/** A required key has no default: Ajv would fill it in before asking whether it is there. */
function withoutDefault(f: Field<unknown>): Field<unknown> {
  const { default: _unused, ...rest } = json(f)
  return field({ ...rest }, TYPE_NAMES.get(f), CHECKS.get(f))
}

/**
 * An object with known keys. Unknown keys are refused (a typo in a config file
 * must stop start-up, not silently fall back to a default).
 */
export function obj<S extends Shape>(shape: S, description = ''): Field<InferShape<S>> {
  const defaults = Object.fromEntries(Object.entries(shape).map(([k, f]) => [k, f.default]))
  return field(objectOf(shape, [], { default: defaults, description }))
}

/** A list of objects whose items have no defaults of their own (accounts, routes…). */
export function records<S extends Shape>(shape: S, o: Opts<InferShape<S>[]> & { required: readonly (keyof S & string)[] }): Field<readonly InferShape<S>[]> {
  const item = objectOf(shape, o.required, {})
  return field(Type.Array(item, { default: o.default, description: o.description }), `list of { ${Object.keys(shape).join(', ')} }`)
}

/** What a form or the reference shows a key as. */
export type FieldKind = 'string' | 'integer' | 'boolean' | 'list' | 'records' | 'object'

export function kindOf(f: Field<unknown>): FieldKind {
  const s = json(f)
  if (s.type === 'array') return (s.items as Schema).type === 'object' ? 'records' : 'list'
  if (s.type === 'string' || s.type === 'integer' || s.type === 'boolean' || s.type === 'object') return s.type
  throw new ConfigError('(schema)', `a key of type ${String(s.type)}`)
}

/** The keys of an object, or of each item of a list of objects. */
export function shapeOf(f: Field<unknown>): Record<string, Field<unknown>> | undefined {
  const s = json(f)
  const o = (s.type === 'array' ? s.items : s) as Schema
  return o.type === 'object' ? (o.properties as Record<string, Field<unknown>>) : undefined
}

/** The keys an item of a list of objects must have. */
export const requiredOf = (f: Field<unknown>): readonly string[] => ((json(f).items as Schema | undefined)?.required as string[] | undefined) ?? []

/** The values a string may take, when it is one of a list (a form shows them as a choice). */
export const valuesOf = (f: Field<unknown>): readonly string[] | undefined => json(f).enum as string[] | undefined

/** The type as the reference names it. */
export function typeNameOf(f: Field<unknown>): string {
  const named = TYPE_NAMES.get(f)
  if (named) return named
  const s = json(f)
  switch (kindOf(f)) {
    case 'string':
      return (
        valuesOf(f)
          ?.map((v) => `"${v}"`)
          .join(' \\| ') ?? 'string'
      )
    case 'integer':
      return `integer (${range(s)})`
    case 'list':
      return `list of ${typeNameOf(s.items as Field<unknown>)}`
    default:
      return kindOf(f)
  }
}

const range = (s: Schema) => `${(s.minimum as number | undefined) ?? '-∞'}…${(s.maximum as number | undefined) ?? '∞'}`

/*
 * One validator per schema. Defaults are filled in (a missing key takes its default, a missing
 * section its defaults), nothing is coerced, and patterns are read as the code wrote them
 * (JavaScript's RegExp without the u flag).
 */
const ajv = new Ajv({ useDefaults: true, coerceTypes: false, allErrors: false, verbose: true, unicodeRegExp: false, strict: true })
const validators = new WeakMap<object, ValidateFunction>()

/** The schema as a JSON Schema document (draft-07) others can check a file against, without the box. */
export function jsonSchemaOf(schema: Field<unknown>, title: string): Record<string, unknown> {
  const { default: _unused, ...root } = json(schema)
  return { $schema: 'http://json-schema.org/draft-07/schema#', title, ...(JSON.parse(JSON.stringify(root)) as Schema) }
}

/** `raw` checked against `schema`, its defaults filled in (on a copy); a ConfigError names the first key that is wrong and why. */
export function parseWith<T>(schema: Field<T>, raw: unknown): T {
  let validate = validators.get(schema)
  if (!validate) {
    // A default means something only below the root (Ajv's strict mode says so).
    const { default: _unused, ...root } = json(schema)
    validators.set(schema, (validate = ajv.compile(root)))
  }
  const value = structuredClone(raw)
  if (!validate(value)) {
    const e = validate.errors![0]!
    throw new ConfigError(...explain(e))
  }
  runChecks(schema, value, '')
  return value as T
}

/** The key an Ajv error is about, and the reason in the words the box has always used. */
function explain(e: ErrorObject): [string, string] {
  const key = e.instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'))
    .reduce((k, p) => (/^\d+$/.test(p) ? `${k}[${p}]` : join(k, p)), '')
  const parent = (e.parentSchema ?? {}) as Schema
  const params = e.params as Record<string, unknown>
  switch (e.keyword) {
    case 'type': {
      const expected = { string: 'a string', integer: 'an integer', boolean: 'true or false', array: 'a list', object: 'an object' }[String(params.type)]
      return [key, `expected ${expected ?? String(params.type)}, got ${describe(e.data)}`]
    }
    case 'additionalProperties':
      return [join(key, String(params.additionalProperty)), 'unknown key']
    case 'required':
      return [join(key, String(params.missingProperty)), 'is required']
    case 'minLength':
      return [key, 'must not be empty']
    case 'enum':
      return [key, `must be one of ${(params.allowedValues as string[]).join(', ')}, got ${describe(e.data)}`]
    case 'pattern':
      return [key, `${describe(e.data)} does not match /${String(params.pattern)}/`]
    case 'minimum':
    case 'maximum':
      return [key, `${String(e.data)} is outside ${range(parent)}`]
    default:
      return [key, e.message ?? e.keyword]
  }
}

/** The checks in code, over a value the schema has already passed. */
function runChecks(f: Field<unknown>, v: unknown, key: string): void {
  const check = CHECKS.get(f)
  if (check && typeof v === 'string') {
    const problem = check(v)
    if (problem) throw new ConfigError(key, problem)
  }
  const s = json(f)
  if (Array.isArray(v)) v.forEach((x, i) => runChecks(s.items as Field<unknown>, x, `${key}[${i}]`))
  else if (v && typeof v === 'object' && s.properties)
    for (const [k, child] of Object.entries(s.properties as Record<string, Field<unknown>>))
      if (k in v) runChecks(child, (v as Record<string, unknown>)[k], join(key, k))
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
