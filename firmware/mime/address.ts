import addressparser from 'nodemailer/lib/addressparser'
import { header, parseEntity } from './entity.ts'

/** The first mailbox address in an address header value (RFC 5322 §3.4), as written. */
export function firstMailbox(value: string | undefined): string | undefined {
  if (!value) return undefined
  return addressparser(value, { flatten: true }).find((a) => a.address)?.address || undefined
}

/** The first mailbox of a message's From header field, lower-cased. */
export function fromAddress(message: Buffer): string | undefined {
  return firstMailbox(header(parseEntity(message), 'from'))?.toLowerCase()
}
