import addressparser from 'nodemailer/lib/addressparser'
import { field, MimeError, readHeader } from './header.ts'

/** The domain of an address (after its last "@"), lower case. */
export const domainOf = (address: string) => address.slice(address.lastIndexOf('@') + 1).toLowerCase()

/**
 * The one mailbox of a From field, lower case. A From that names more than
 * one mailbox is refused as ambiguous: readers show one, DMARC checks another.
 */
export function fromMailbox(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  if (atSigns(value) > 1) throw new MimeError('EMESSAGE_AMBIGUOUS', 'the From field names more than one mailbox')
  const found = addressparser(value, { flatten: true }).filter((a) => a.address)
  if (found.length > 1) throw new MimeError('EMESSAGE_AMBIGUOUS', 'the From field names more than one mailbox')
  return found[0]?.address.toLowerCase() || undefined
}

/** "@" signs outside quoted strings and comments (one pass). */
function atSigns(value: string): number {
  let n = 0
  let quoted = false
  let comment = 0
  for (let i = 0; i < value.length; i++) {
    const c = value[i]
    if (c === '\\') i++
    else if (quoted) quoted = c !== '"'
    else if (c === '"') quoted = true
    else if (c === '(') comment++
    else if (c === ')' && comment > 0) comment--
    else if (c === '@' && comment === 0) n++
  }
  return n
}

/** The From mailbox of a message's top header, lower case (for tools that hold only the bytes). */
export function fromAddress(message: Buffer): string | undefined {
  return fromMailbox(field(readHeader(message), 'from'))
}
