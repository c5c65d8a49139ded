/**
 * Errors with a code from a pinned table (#34): the mechanism behind the box's table
 * (firmware/box-errors.ts) and this layer's own, below. The HSM's codes are hal/hsm/errors.ts's.
 * Operators and tools match on codes: a row is added, never renamed.
 */
export const HAL_ERRORS = {
  EDER_INVALID: 'DER data or an X.509 certificate that cannot be read',
  ENAME_INVALID: 'a distinguished name that cannot be read (use CN, O, OU, C, L, ST, serialNumber, emailAddress)',
  ENET_INVALID: 'a network device, address or address range that is not one',
  EFIREWALL_INVALID: 'firewall rules that would not be what the listeners and routes need',
  ESOCKET_CLOSED: 'the connection closed while bytes were still to be written',
  EBUILD_REFUSED: 'a firmware image cannot be built from this tree as it is',
} as const

export type HalErrorCode = keyof typeof HAL_ERRORS

/** An error class for `code`, named `name` (fastify's createError): `message` defaults to `text`. */
export function codedError<C extends string>(code: C, name: string, text: string) {
  return class extends Error {
    readonly code: C = code
    override name = name
    constructor(message: string = text, options?: ErrorOptions) {
      super(message, options)
    }
  }
}

const CLASSES = new Map<string, new (message?: string, options?: ErrorOptions) => Error & { code: string }>()

/** One class per code, made once, named `Name[CODE]`: for throws that need no class of their own. */
export function oneOff<C extends string>(code: C, name: string, text: string, message?: string, options?: ErrorOptions): Error & { readonly code: C } {
  let E = CLASSES.get(code)
  if (!E) CLASSES.set(code, (E = codedError(code, `${name}[${code}]`, text)))
  return new E(message, options) as Error & { readonly code: C }
}

/** A hal error with its code: `throw halError('ENET_INVALID', '"eth 0" is not a network device name')`. */
export function halError(code: HalErrorCode, message?: string): Error & { readonly code: HalErrorCode } {
  return oneOff(code, 'HalError', HAL_ERRORS[code], message)
}
