import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ReturnPathListener } from '../../firmware/bounces/listener.ts'
import { ReturnPathTokens, type ReturnRef } from '../../firmware/bounces/verp.ts'
import type { BoxEvent } from '../../firmware/events.ts'
import { loadTlsMaterial, serverTlsOptions } from '../../firmware/submission/tls.ts'
import { BOX_KEYS } from '../../firmware/keys/manifest.ts'
import { newQueueId } from '../../firmware/spool/ids.ts'
import { testConfig } from './box.ts'
import { devHsm } from './hsm.ts'
import { logSink } from './logs.ts'

type T = { teardown(fn: () => unknown): void }

/**
 * The return-path listener in this process, on a port of its own, with a
 * fresh SoftHSM token for its tokens: the events it emits and its log parsed
 * back. `mint` makes a real token address for a (made-up) statement.
 */
export async function startReturnPath(t: T, returnPath: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
  const { hsm } = await devHsm(t)
  await hsm.ensureKeys(BOX_KEYS)
  const config = await testConfig(t, {
    ...overrides,
    returnPath: { domains: [{ from: 'bank.example', returnPath: 'bounce.bank.example' }], listen: '127.0.0.1:0', ...returnPath },
  })
  const { log, records } = logSink()
  const tokens = new ReturnPathTokens(hsm)
  const events: BoxEvent[] = []
  let durable = 0
  const listener = new ReturnPathListener({
    config,
    tokens,
    events: { emit: (e) => void events.push(e), durable: () => Promise.resolve(void durable++) },
    log,
    clock: { now: () => Date.now() },
    tls: () => serverTlsOptions(loadTlsMaterial(config, log), config.submission.tls.minVersion),
  })
  await listener.start()
  t.teardown(() => listener.stop())
  await tokens.keys()
  const mint = (ref: Partial<ReturnRef> = {}) => `${tokens.localPart({ kind: 'b', id: newQueueId(), recipient: 0, ...ref })}@bounce.bank.example`
  const ca = readFileSync(join(config.dataDir, 'tls', 'submission.crt'), 'utf8')
  return { listener, events, records, port: listener.address.port, mint, config, tls: { ca, servername: 'localhost' } }
}

/** A DSN as Postfix writes one: `action` failed or delayed for `rcpt`. */
export function dsnFor(rcpt: string, action: 'failed' | 'delayed' = 'failed', status = '5.1.1'): string {
  return (
    `From: MAILER-DAEMON@mx.example.net\r\nTo: bounce@bounce.bank.example\r\nSubject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n` +
    `Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n--R\r\nContent-Type: text/plain\r\n\r\nI'm sorry.\r\n` +
    `--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; ${rcpt}\r\nAction: ${action}\r\n` +
    `Status: ${status}\r\nDiagnostic-Code: smtp; 550 ${status} user unknown\r\n\r\n--R--\r\n`
  )
}
