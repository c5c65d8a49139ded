import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ReturnPathListener } from '../../firmware/return-path/listener.ts'
import { ReturnPathTokens, type ReturnRef } from '../../firmware/return-path/verp.ts'
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

/** An MDN (RFC 8098) with `disposition` (displayed, deleted …), quoting `messageId` if given. */
export function mdnFor(disposition: string, messageId?: string): string {
  return (
    `From: wang@example.net\r\nTo: receipts@bounce.bank.example\r\nSubject: Read: statement\r\nMIME-Version: 1.0\r\n` +
    `Content-Type: multipart/report; report-type=disposition-notification; boundary="M"\r\n\r\n--M\r\nContent-Type: text/plain\r\n\r\nYour message was ${disposition}.\r\n` +
    `--M\r\nContent-Type: message/disposition-notification\r\n\r\nReporting-UA: Microsoft Outlook 16.0\r\nFinal-Recipient: rfc822;wang@example.net\r\n` +
    `${messageId ? `Original-Message-ID: <${messageId}>\r\n` : ''}Disposition: manual-action/MDN-sent-manually; ${disposition}\r\n\r\n--M--\r\n`
  )
}

/** A vacation reply (RFC 3834). */
export const AUTO_REPLY = 'From: wang@example.net\r\nTo: b@bounce.bank.example\r\nSubject: Out of office\r\nAuto-Submitted: auto-replied\r\n\r\nI am away.\r\n'

/** Sends one report to the return-path listener on `port`, addressed to `to`; the final reply's code. */
export async function sendReport(port: number, to: string, report: string, localAddress = '127.0.0.1'): Promise<number> {
  const { RawSmtp } = await import('./smtp.ts')
  const c = await RawSmtp.open(port, { localAddress })
  try {
    await c.reply()
    await c.cmd('EHLO mx.example.net')
    await c.cmd('MAIL FROM:<>')
    const rcpt = await c.cmd(`RCPT TO:<${to}>`)
    if (rcpt.code !== 250) return rcpt.code
    await c.cmd('DATA')
    c.write(`${report.replace(/^\./gm, '..')}\r\n.\r\n`)
    return (await c.reply()).code
  } finally {
    c.close()
  }
}
