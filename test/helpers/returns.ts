import { ReturnPathListener } from '../../firmware/return-path/listener.ts'
import { ReturnPathTokens } from '../../firmware/return-path/verp.ts'
import type { BoxEvent } from '../../firmware/events.ts'
import { BOX_KEYS } from '../../firmware/keys/manifest.ts'
import { statementHistory } from '../../firmware/ledger/queries.ts'
import { loadTlsMaterial, serverTlsOptions } from '../../firmware/submission/tls.ts'
import { tempDir } from './box.ts'
import { deliveryRig, route } from './delivery.ts'
import { devHsm } from './hsm.ts'
import { logSink } from './logs.ts'
import { startReceiver, until, type ReceiverOptions } from './receiver.ts'
import { ledgerRig, submitted } from './reports.ts'

type T = { teardown(fn: () => unknown): void }

export const CLASS = 'monthly-high-value'
const READ_VERDICT = { read: 'ended', 'not-awaiting': 'final', 'not-evidence': 'not-evidence' } as const

/**
 * The box's return path end to end in one process, with one clock the test
 * moves (#30): the spool and delivery engine (to a loopback receiver), the
 * return-path listener acting on them as the daemon wires it, and the audit
 * trail with the statement ledger reading every event of both. So the spool's
 * final state and the ledger's row can be compared for any path a statement
 * takes.
 */
export async function returnsRig(t: T, start: number, receiver: ReceiverOptions = {}) {
  const { hsm } = await devHsm(t)
  await hsm.ensureKeys(BOX_KEYS)
  const returnPath = {
    domains: [{ from: 'bank.example', returnPath: 'bounce.bank.example' }],
    readReceipts: [{ statementClass: CLASS, firstSendWaitMinutes: 60, secondSendWaitMinutes: 60 }],
    listen: '127.0.0.1:0',
  }
  const ledger = await ledgerRig(t, {}, { returnPath }, hsm)
  ledger.clock.value = start
  const rx = await startReceiver(t, receiver)
  const tokens = new ReturnPathTokens(hsm)
  const rig = await deliveryRig(
    t,
    hsm,
    { ...route(rx.port), maxAgeSeconds: 6 * 3600, retrySeconds: [600] },
    { now: start, dataDir: tempDir(t), config: { returnPath }, returnPath: tokens },
  )
  // One clock: the ledger's trail stamps records with the delivery rig's time.
  ledger.clock.now = () => rig.clock.now
  const config = rig.config
  const events: BoxEvent[] = []
  const listener = new ReturnPathListener({
    config,
    tokens,
    events: { emit: (e) => void events.push(e), durable: () => Promise.resolve() },
    log: logSink().log,
    clock: { now: () => rig.clock.now },
    tls: () => serverTlsOptions(loadTlsMaterial(config, logSink().log), config.submission.tls.minVersion),
    onRead: async (id) => READ_VERDICT[await rig.engine.read(id, 'mdn')],
    onBounced: ({ id, hard, reason }) => rig.engine.returnedBounce(id, hard, reason),
  })
  await listener.start()
  t.teardown(() => listener.stop())
  await tokens.keys()
  let seenDelivery = 0
  let seenReturns = 0
  /** Every event so far, of both, in the order they came, into the trail and the ledger. */
  const sync = async () => {
    const fresh = [...rig.events.slice(seenDelivery), ...events.slice(seenReturns)]
    seenDelivery = rig.events.length
    seenReturns = events.length
    if (fresh.length) await ledger.emit(...fresh)
  }
  return {
    rx,
    rig,
    ledger,
    listener,
    port: listener.address.port,
    /** Submits a statement of `cls` to `rcpt` (its acceptance recorded as the box records it). */
    async send(statementId: string, cls = CLASS, rcpt = 'wang@example.net'): Promise<string> {
      const { id } = await rig.enqueue(rcpt, 'Statement body\r\n', undefined, '', { statementClass: cls })
      await ledger.emit(...submitted(id, [rcpt], { statementId, statementClass: cls, batch: 'B' }))
      return id
    },
    /** The token address of a statement's recipient: its bounce address (`b`) or read-receipt address (`r`). */
    address: (id: string, kind: 'b' | 'r') => `${tokens.localPart({ kind, id, recipient: 0 })}@bounce.bank.example`,
    sync,
    async advance(ms: number, settle: () => boolean = () => true) {
      rig.clock.now += ms
      await until(settle, 10_000).catch(() => undefined)
      await new Promise((r) => setTimeout(r, 100))
      await sync()
    },
    /** The spool's final outcome of a queue id, if it has one. */
    final: (id: string) => rig.events.find((e): e is Extract<BoxEvent, { type: 'spool.final' }> => e.type === 'spool.final' && e.id === id)?.outcome,
    async row(statementId: string) {
      await sync()
      return (await statementHistory(ledger.ledger.store, statementId))[0]!
    },
  }
}
