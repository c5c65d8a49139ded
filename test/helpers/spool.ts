import { createCipheriv, randomBytes } from 'node:crypto'
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

/**
 * A record as the firmware before #35 wrote it (version 1): its own data key, wrapped by the epoch's HSM key,
 * in the clear header. Written here from the format, not with the spool's code, so old records stay readable.
 */
export function encodeVersion1(
  m: Submitted,
  meta: { id: string; epoch: string; created: number },
  dataKey: Buffer,
  wrapped: { iv: Buffer; ciphertext: Buffer },
): Buffer {
  const nonce = randomBytes(12)
  const header = Buffer.from(
    JSON.stringify({
      ...meta,
      size: m.message.length,
      wrapIv: wrapped.iv.toString('base64'),
      wrapCt: wrapped.ciphertext.toString('base64'),
      nonce: nonce.toString('base64'),
    }),
  )
  const prefix = Buffer.alloc(9)
  prefix.write('SGSP', 0, 'latin1')
  prefix[4] = 1
  prefix.writeUInt32BE(header.length, 5)
  const aad = Buffer.concat([prefix, header])
  const env = Buffer.from(JSON.stringify(m.envelope))
  const envLen = Buffer.alloc(4)
  envLen.writeUInt32BE(env.length)
  const cipher = createCipheriv('aes-256-gcm', dataKey, nonce)
  cipher.setAAD(aad)
  return Buffer.concat([aad, cipher.update(envLen), cipher.update(env), cipher.update(m.message), cipher.final(), cipher.getAuthTag()])
}
