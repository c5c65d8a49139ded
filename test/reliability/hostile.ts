import { execFile } from 'node:child_process'
import { rmSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { RawSmtp } from '../helpers/smtp.ts'
import { Box, Submitter, type SendResult } from './box.ts'
import { receiver, row, routeTo } from './mx.ts'

const run = promisify(execFile)

/** Garbage, abuse and floods from several addresses while a good client keeps submitting. */
export async function smtpFuzz(): Promise<void> {
  const rx = await receiver()
  const box = await Box.create((c) => {
    routeTo(rx.port)(c)
    ;(c.submission as Record<string, unknown>).maxClientsPerAddress = 16
    ;(c.submission as Record<string, unknown>).authTimeoutMs = 5000
  })
  await box.start()
  let stop = false
  const goodTimes: number[] = []
  let goodFailures = 0
  const good = (async () => {
    const s = new Submitter(box, '127.0.0.1')
    let i = 0
    while (!stop) {
      const t0 = Date.now()
      const r: SendResult = await s.send(`GOOD-${++i}`)
      if (r.code === 250) goodTimes.push(Date.now() - t0)
      else goodFailures++
      s.close() // a new connection each time: the full path, handshake included
      await sleep(200)
    }
  })()
  const attacks = [
    '\x00\x01\x02garbage\r\n'.repeat(100),
    `EHLO ${'x'.repeat(100_000)}\r\n`,
    'DATA\r\nRCPT TO:<a@b>\r\nMAIL FROM:<a@b>\r\n',
    'EHLO x\r\nMAIL FROM:<a@b>\r\n\r\n.\r\n',
    'EHLO x\r\nAUTH PLAIN AAAA\r\nAUTH LOGIN\r\n!!!!\r\nAUTH XOAUTH2 junk\r\n',
    'EHLO x\r\nBDAT 100 LAST\r\n',
    'EHLO x\r\nSTARTTLS\r\nnot a tls hello\r\n',
    `${'A'.repeat(1_000_000)}\r\n`,
  ]
  let sessions = 0
  const addresses = ['127.0.0.41', '127.0.0.42', '127.0.0.43', '127.0.0.44']
  const flood = addresses.map(async (addr, k) => {
    const end = Date.now() + 20_000
    const held: RawSmtp[] = []
    while (Date.now() < end) {
      // Slow-loris from two addresses: open connections and hold them, saying nothing (or half a
      // line); from the other two, sessions of garbage, out-of-order commands and long lines.
      const c = await RawSmtp.open(box.port, { localAddress: addr }).catch(() => undefined)
      if (c) {
        sessions++
        if (k < 2) {
          if (sessions % 2) c.write('EHLO slow')
          held.push(c)
          for (let i = held.length - 1; i >= 0; i--) if (held[i]!.closed) held.splice(i, 1)
        } else {
          c.write(attacks[sessions % attacks.length]!)
          setTimeout(() => c.close(), 500)
        }
      }
      await sleep(k < 2 ? 25 : 10)
    }
    for (const c of held) c.close()
  })
  await Promise.all(flood)
  stop = true
  await good
  const status = (await box.status()) as { submission: Record<string, unknown> }
  const alive = box.alive
  await box.kill('SIGTERM')
  await rx.close()
  const slowest = Math.max(...goodTimes)
  row(
    'SMTP fuzz and floods from 4 addresses (20 s)',
    `${sessions} hostile sessions; box alive ${alive}; good submissions from another address: ${goodTimes.length} answered 250, ${goodFailures} failed, slowest ${slowest} ms; guard ${JSON.stringify(status.submission)}`,
    alive && goodFailures === 0 && goodTimes.length > 10 && slowest < 2000,
  )
  rmSync(box.dataDir, { recursive: true, force: true })
}

/** sslscan of both ports: TLS 1.2/1.3 with ECDHE only, no client renegotiation. */
export async function tlsScan(): Promise<void> {
  const box = await Box.create(routeTo(25))
  await box.start()
  for (const [name, args] of [
    ['implicit TLS', [`127.0.0.1:${box.implicitPort}`]],
    ['STARTTLS', ['--starttls-smtp', `127.0.0.1:${box.port}`]],
  ] as const) {
    let problem = ''
    const out =
      (await run('sslscan', ['--no-colour', '--no-heartbleed', ...args]).then(
        (r) => r.stdout,
        (e: { stdout?: string; code?: string | number; message: string }) => {
          if (e.code === 'ENOENT') problem = 'sslscan is not installed (bash provisioning/os-packages.sh --reliability); '
          return e.stdout
        },
      )) ?? ''
    const enabled = out.split('\n').filter((l) => /^(Preferred|Accepted)\s/.test(l))
    const protocols = [...new Set(enabled.map((l) => /(TLSv1\.\d|SSLv\d)/.exec(l)?.[1] ?? '?'))]
    const nonEcdhe = enabled.filter((l) => !/TLS_|ECDHE/.test(l))
    const reneg = /TLS renegotiation:\s*\n(.*)/.exec(out)?.[1]?.trim() ?? '?'
    const renegSupported = !/not supported/i.test(reneg)
    row(
      `TLS scan (sslscan), ${name}`,
      `${problem}protocols ${protocols.join(', ') || 'none seen'}; ${enabled.length} suites, ${nonEcdhe.length} without ECDHE; client renegotiation: ${reneg}`,
      protocols.every((p) => p === 'TLSv1.2' || p === 'TLSv1.3') && nonEcdhe.length === 0 && enabled.length > 0 && !renegSupported,
    )
  }
  await box.kill('SIGTERM')
  rmSync(box.dataDir, { recursive: true, force: true })
}
