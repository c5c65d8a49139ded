import { GatewayError } from '../errors.ts'
import { MimeError } from '../mime/header.ts'
import { spliceMessage, type Splice } from '../mime/edit.ts'
import { parseMessage } from '../mime/tree.ts'
import { factsOf, type MessageFacts } from './facts.ts'
import type { Submitted } from './handoff.ts'

/**
 * The facts of a mail on its way down the pipeline: those it carries, or — for a caller that
 * did not read it (a tool, a test handing a stage a bare message) — one reading now.
 * A message the box would refuse throws the GatewayError its structure earns.
 */
export function factsFor(mail: Submitted): MessageFacts {
  if (mail.facts && mail.facts.bytes === mail.message.length) return mail.facts
  try {
    return factsOf(mail.message, parseMessage(mail.message))
  } catch (err) {
    if (err instanceof MimeError) throw new GatewayError(err.code, err.message)
    throw err
  }
}

/** The mail with its bytes edited, and facts that match them, moved rather than read again (mime/edit.ts). */
export function edited(mail: Submitted, splices: readonly Splice[]): Submitted {
  const facts = factsFor(mail)
  const { message, tree } = spliceMessage(mail.message, facts.tree, splices)
  return { ...mail, message, facts: factsOf(message, tree) }
}
