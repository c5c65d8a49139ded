/**
 * Field names whose values are secrets (S6): removed from every log record
 * (firmware/log.ts) and from configuration snapshots in the audit trail
 * (firmware/audit/trail.ts). One list, so the two cannot drift apart.
 */
export const SECRET_FIELDS = ['password', 'passwordHash', 'pin', 'secret', 'privateKey', 'key', 'authorization'] as const
