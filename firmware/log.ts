import pino, { type Logger, type DestinationStream } from 'pino'
import { SECRET_FIELDS } from './secrets.ts'

export type { Logger }

/**
 * Paths pino removes from every log record. Secrets, PINs and AUTH data never
 * reach the log (S6; STYLE: logs are for machines and auditors); message bodies
 * are never passed to the logger in the first place.
 */
export const REDACT_PATHS = SECRET_FIELDS.flatMap((f) => [f, `*.${f}`])

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { svc: 'statement-gateway' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  )
}

/**
 * Masks a mail address for operational logs: `c****r@example.com`. Enough to
 * tell two recipients apart, not enough to identify a customer (S6).
 */
export function maskAddress(address: string): string {
  const at = address.lastIndexOf('@')
  if (at < 0) return mask(address)
  return `${mask(address.slice(0, at))}@${address.slice(at + 1)}`
}

function mask(local: string): string {
  if (local.length <= 2) return '*'.repeat(local.length)
  return `${local[0]}****${local[local.length - 1]}`
}
