import { createRequire } from 'node:module'

/**
 * pkcs11js, loaded once. hal/hsm is the only place in the box that touches it
 * (DESIGN: only hal/hsm imports pkcs11js). It is a CommonJS addon whose exports
 * are attached at run time, so it is required rather than imported by name.
 */
export type Pkcs11Module = typeof import('pkcs11js')
export type Handle = Buffer
export type PKCS11 = import('pkcs11js').PKCS11

export const pkcs11: Pkcs11Module = createRequire(import.meta.url)('pkcs11js') as Pkcs11Module

/** Mechanisms and key types newer than pkcs11js's constant table (PKCS#11 v3.0). */
export const CKK_EC_EDWARDS = 0x40
export const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055
export const CKM_EDDSA = 0x1057

/** A PKCS#11 fixed-width text field without its blank or NUL padding. */
export function cleanLabel(field: string): string {
  return field.replace(/[\s\0]+$/, '')
}

/** A CK_ULONG attribute value (8 bytes on 64-bit platforms, little-endian). */
export function ulong(value: Buffer | undefined): number {
  if (!value || value.length === 0) return 0
  return value.length === 8 ? Number(value.readBigUInt64LE()) : value.readUIntLE(0, value.length)
}
