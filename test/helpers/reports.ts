import type { BoxEvent } from '../../firmware/events.ts'
import type { Hsm } from '../../hal/hsm/index.ts'
import { Ledger } from '../../firmware/ledger/ledger.ts'
import { auditRig, type AuditRig } from './audit.ts'
import { logSink } from './logs.ts'

type T = { teardown(fn: () => unknown): void }

export interface LedgerRig extends AuditRig {
  ledger: Ledger
  /** Events through the audit trail (as the box records them), then into the ledger. */
  emit(...events: BoxEvent[]): Promise<void>
  /** A new ledger over the same trail and store (a restart of the box). */
  restartLedger(): Promise<Ledger>
}

/** An audit trail on a fresh token with the statement ledger reading it. */
export async function ledgerRig(t: T, reports: Record<string, unknown> = {}, extra: Record<string, unknown> = {}, shared?: Hsm): Promise<LedgerRig> {
  const rig = await auditRig(t, {}, { reports: { timeZone: 'UTC', ...reports }, ...extra }, shared)
  const make = async () => {
    const ledger = new Ledger({ config: rig.config, log: logSink().log, trail: rig.trail, events: rig.trail, clock: rig.clock })
    await ledger.start()
    t.teardown(() => ledger.stop())
    return ledger
  }
  const out: LedgerRig = {
    ...rig,
    ledger: await make(),
    async emit(...events) {
      for (const e of events) rig.trail.emit(e)
      await rig.trail.flush()
      await out.ledger.caughtUp()
    },
    async restartLedger() {
      await out.ledger.stop()
      out.ledger = await make()
      await out.ledger.caughtUp()
      return out.ledger
    },
  }
  return out
}

/** The events of one statement's submission, as the box emits them. */
export function submitted(
  id: string,
  recipients: string[],
  tags: { statementId?: string; statementClass?: string; batch?: string; account?: string } = {},
): BoxEvent[] {
  const account = tags.account ?? 'firm-statements'
  return [
    { type: 'policy.accepted', id, account, profile: 'securities', statementClass: tags.statementClass, statementId: tags.statementId, batch: tags.batch },
    { type: 'signing.signed', id, smime: { serial: '01ab', issuer: 'CN=Test CA', algorithm: 'rsa-pkcs1-sha256' }, dkim: ['bank.example'], encrypted: false },
    { type: 'spool.queued', id, epoch: 'e1', bytes: 60_000 },
    { type: 'submission.accepted', id, account, clientAddress: '127.0.0.1', tls: 'TLSv1.3', recipients, bytes: 60_000 },
  ]
}

/** A delivery attempt's event for some recipients of a statement. */
export function attempt(id: string, outcome: 'delivered' | 'deferred' | 'bounced', recipients: string[], reply: string): BoxEvent {
  return { type: 'delivery.attempt', id, kind: 'statement', outcome, recipients, mx: 'mx.example.net', sourceIp: '127.0.0.11', reply, tls: 'TLSv1.3' }
}
