import type { StatementTags } from '../../firmware/pipeline/facts.ts'
import type { Resolver } from '../../firmware/delivery/routes.ts'
import type { ReturnPathTokens } from '../../firmware/return-path/verp.ts'
import { AuditCopyHandoff } from '../../firmware/delivery/audit-copy.ts'
import { DeliveryEngine } from '../../firmware/delivery/engine.ts'
import type { BoxEvent } from '../../firmware/events.ts'
import { parseConfig, type Config } from '../../firmware/config/load.ts'
import { Spool } from '../../firmware/spool/spool.ts'
import type { Hsm } from '../../hal/hsm/index.ts'
import { newQueueId } from '../../firmware/spool/ids.ts'
import { tempDir } from './box.ts'
import { logSink } from './logs.ts'

type T = { teardown(fn: () => unknown): void }

/** A spool and a delivery engine over it, with a clock the test can move. */
export async function deliveryRig(
  t: T,
  hsm: Hsm,
  delivery: Record<string, unknown>,
  opts: {
    resolver?: Resolver
    now?: number
    dataDir?: string
    shutdown?: Record<string, unknown>
    /** Other config sections (e.g. returnPath). */
    config?: Record<string, unknown>
    returnPath?: ReturnPathTokens
  } = {},
) {
  const clock = { now: opts.now ?? Date.now() }
  const config: Config = parseConfig({
    dataDir: opts.dataDir ?? tempDir(t),
    spool: { verifyOnStart: false },
    delivery: { timeouts: { connectMs: 2000, greetingMs: 3000, commandMs: 3000, dataMs: 3000 }, retrySeconds: [60], ...delivery },
    ...(opts.shutdown ? { shutdown: opts.shutdown } : {}),
    ...opts.config,
  })
  const events: BoxEvent[] = []
  const { log, records } = logSink()
  const sink = { emit: (e: BoxEvent) => void events.push(e) }
  const spool = new Spool({ config, log, hsm, events: sink, clock: { now: () => clock.now } })
  await spool.start()
  const engine = new DeliveryEngine({
    config,
    log,
    spool,
    events: sink,
    clock: { now: () => clock.now },
    ...(opts.resolver ? { resolver: opts.resolver } : {}),
    ...(opts.returnPath ? { returnPath: opts.returnPath } : {}),
  })
  await engine.start()
  t.teardown(async () => {
    await engine.stop()
    await spool.stop()
  })
  const handoff = new AuditCopyHandoff(spool, config)
  const enqueue = async (rcpt: string | string[], body = 'Statement body\r\n', id = newQueueId(), headers = '', tags: Partial<StatementTags> = {}) => {
    const rcptTo = typeof rcpt === 'string' ? [rcpt] : rcpt
    const message = Buffer.from(
      `From: statements@bank.example\r\nTo: ${rcptTo.join(', ')}\r\nSubject: statement ${id}\r\nMessage-ID: <${id}@bank.example>\r\n${headers}\r\n${body}`,
    )
    await handoff.accept({
      envelope: {
        id,
        mailFrom: 'statements@bank.example',
        rcptTo,
        account: 'firm',
        clientAddress: '127.0.0.1',
        tls: undefined,
        receivedAt: clock.now,
        ...tags,
      },
      message,
    })
    return { id, message }
  }
  return { spool, engine, events, records, clock, enqueue, config }
}

export function finals(events: BoxEvent[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const e of events) if (e.type === 'spool.final') out[e.id] = e.outcome
  return out
}

/** Delivery config routing example.net to one loopback port. */
export const route = (port: number, extra: Record<string, unknown> = {}) => ({ routes: [{ domain: 'example.net', host: '127.0.0.1', port, ...extra }] })
