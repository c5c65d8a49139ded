import type { BoxEvent } from '../../firmware/events.ts'
import { parseConfig } from '../../firmware/config/load.ts'
import { PolicyStage } from '../../firmware/pipeline/stages/policy.ts'
import { ACCOUNT, startSubmission, tempDir } from './box.ts'
import { logSink } from './logs.ts'
import { RawSmtp } from './smtp.ts'

export const LABEL = '有價證券月對帳單'
export const subject = (s: string) => `=?UTF-8?B?${Buffer.from(s).toString('base64')}?=`

export function statement(
  opts: { subject?: string; from?: string; body?: string; attachments?: { name: string; type: string; content: Buffer }[]; cls?: string } = {},
): string {
  const b = 'mixed-boundary'
  const parts = [
    `--${b}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n${Buffer.from(opts.body ?? '您好，本月對帳單如附件。').toString('base64')}\r\n`,
  ]
  for (const a of opts.attachments ?? []) {
    parts.push(
      `--${b}\r\nContent-Type: ${a.type}; name="${a.name}"\r\nContent-Disposition: attachment; filename="${a.name}"\r\nContent-Transfer-Encoding: base64\r\n\r\n${a.content.toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n`,
    )
  }
  return (
    `From: ${opts.from ?? 'statements@bank.example'}\r\nTo: customer@example.net\r\nSubject: ${opts.subject ?? subject(`2026年11月${LABEL}`)}\r\n` +
    (opts.cls ? `X-Statement-Class: ${opts.cls}\r\n` : '') +
    `MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="${b}"\r\n\r\n${parts.join('')}--${b}--\r\n`
  )
}

/** The policy gate in front of a real submission server; `send` talks SMTP to it and returns the reply to DATA. */
export async function policyRig(t: Parameters<typeof startSubmission>[0], profile: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const config = parseConfig({
    dataDir: tempDir(t),
    policy: { profiles: [{ name: 'securities', accounts: [ACCOUNT.name], domains: ['bank.example'], ...profile }] },
    ...extra,
  })
  const events: BoxEvent[] = []
  const policy = new PolicyStage({ config, log: logSink().log, events: { emit: (e) => void events.push(e) } })
  await policy.start()
  t.teardown(() => policy.stop())
  const box = await startSubmission(t, {}, { stages: [policy] })
  const send = async (data: string, rcpts = ['customer@example.net'], mailFrom = 'statements@bank.example') => {
    const c = await RawSmtp.open(box.starttlsPort)
    await c.handshake(box.tls)
    await c.authPlain(ACCOUNT.name, ACCOUNT.password)
    await c.cmd(`MAIL FROM:<${mailFrom}>`)
    for (const r of rcpts) await c.cmd(`RCPT TO:<${r}>`)
    await c.cmd('DATA')
    c.write(`${data}.\r\n`)
    const reply = await c.reply()
    c.close()
    return reply
  }
  return { box, policy, events, send }
}
