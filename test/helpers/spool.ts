import type { Hsm } from '../../hal/hsm/index.ts'
import { parseConfig, type Config } from '../../firmware/config/load.ts'
import type { BoxEvent } from '../../firmware/events.ts'
import type { Submitted } from '../../firmware/pipeline/handoff.ts'
import { newQueueId } from '../../firmware/spool/ids.ts'
import { Spool } from '../../firmware/spool/spool.ts'
import { logSink } from './logs.ts'

type T = { teardown(fn: () => unknown): void }

export interface SpoolRig {
  spool: Spool
  config: Config
  events: BoxEvent[]
  records: Record<string, unknown>[]
  clock: { now: number }
  /** A new Spool on the same directory and HSM, as after a restart. */
  restart(): Promise<SpoolRig>
}

export async function spoolRig(t: T, hsm: Hsm, dataDir: string, spoolConfig: Record<string, unknown> = {}, clock = { now: Date.now() }): Promise<SpoolRig> {
  const config = parseConfig({ dataDir, spool: { verifyOnStart: false, ...spoolConfig } })
  const events: BoxEvent[] = []
  const { log, records } = logSink()
  const spool = new Spool({ config, log, hsm, events: { emit: (e) => void events.push(e) }, clock: { now: () => clock.now } })
  await spool.start()
  let stopped = false
  t.teardown(async () => {
    if (!stopped) await spool.stop()
  })
  return {
    spool,
    config,
    events,
    records,
    clock,
    async restart() {
      stopped = true
      await spool.stop()
      return spoolRig(t, hsm, dataDir, spoolConfig, clock)
    },
  }
}

export function mail(body: string, rcpt = 'customer@example.net'): Submitted {
  return {
    envelope: {
      id: newQueueId(),
      mailFrom: 'statements@bank.example',
      rcptTo: [rcpt],
      account: 'firm',
      clientAddress: '127.0.0.1',
      tls: undefined,
      receivedAt: Date.now(),
    },
    message: Buffer.from(`From: statements@bank.example\r\nTo: ${rcpt}\r\nSubject: statement\r\n\r\n${body}\r\n`),
  }
}
