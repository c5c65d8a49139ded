import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { searchTrail } from '../../firmware/audit/search.ts'
import { HALF_HELLO, LISTENERS, Wire, type ListenerName } from '../helpers/lifecycle.ts'
import { RawSmtp } from '../helpers/smtp.ts'
import { Box, statement } from './box.ts'
import { goodClientThread } from './good-thread.ts'
import { receiver, routeTo, row } from './mx.ts'

/**
 * #29's floods, each against the box on its shipped defaults (every listener
 * on a free port; what a row changes, it names): what a client on the
 * internet or in the firm's network may cost the box, and what the firm's
 * good client sees meanwhile.
 */

const MB = 2 ** 20
const pct = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.max(0, Math.ceil(xs.length * q) - 1)] ?? NaN

/** VmRSS of the box now, in bytes. */
function rss(box: Box): number {
  return box.rss()
}

/** One good submission the way the firm's system sends it: a connection of its own, STARTTLS, AUTH, one mail. */
async function goodSubmission(box: Box, id: string, localAddress = '127.0.0.1'): Promise<{ code: number; ms: number }> {
  const t0 = Date.now()
  const c = await RawSmtp.open(box.port, { localAddress })
  try {
    await c.handshake(box.tls)
    const a = await c.authPlain('statements', box.password)
    if (a.code !== 235) return { code: a.code, ms: Date.now() - t0 }
    await c.cmd('MAIL FROM:<statements@bank.example>')
    await c.cmd('RCPT TO:<customer@example.net>')
    await c.cmd('DATA')
    c.write(statement(id))
    const r = await c.reply(30_000)
    return { code: r.code, ms: Date.now() - t0 }
  } catch {
    return { code: 0, ms: Date.now() - t0 }
  } finally {
    c.close()
  }
}

/** Runs `probe` every `everyMs` until `stop()` says so; the latencies of those answered `ok`, and the failures. */
function sampler(probe: () => Promise<{ ok: boolean; ms: number }>, everyMs: number) {
  const ms: number[] = []
  let failed = 0
  let stopped = false
  const loop = (async () => {
    while (!stopped) {
      const tick = sleep(everyMs)
      const r = await probe().catch(() => ({ ok: false, ms: 0 }))
      if (r.ok) ms.push(r.ms)
      else failed++
      await tick
    }
  })()
  return {
    ms,
    failed: () => failed,
    stop: async () => {
      stopped = true
      await loop
    },
  }
}

/** 1,000 reports half sent from 100 addresses (10 MB each offered, never the final dot), twice. */
export async function returnPathMemory(): Promise<void> {
  const rx = await receiver()
  const box = await Box.create(routeTo(rx.port))
  await box.start()
  await sleep(3000)
  const idle = rss(box)
  // The good client runs on a thread of its own: the flood below keeps this thread's event loop busy.
  const goodThread = goodClientThread(box.target, 'return-path', 200, '127.0.0.1')
  const cpu = () => {
    const f = readFileSync(`/proc/${box.proc!.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    return (Number(f[11]) + Number(f[12])) / 100
  }
  const round = async (r: number) => {
    const c0 = cpu()
    const me0 = process.cpuUsage()
    const w0 = Date.now()
    const conns: RawSmtp[] = []
    await Promise.all(
      Array.from({ length: 100 }, async (_, a) => {
        for (let k = 0; k < 10; k++) {
          const c = await RawSmtp.open(box.ports['return-path']!, { localAddress: `127.0.${10 + r}.${a + 1}` }).catch(() => undefined)
          if (!c) continue
          conns.push(c)
          try {
            await c.reply()
            await c.cmd('EHLO mx.example.net')
            await c.cmd('MAIL FROM:<>')
            await c.cmd('RCPT TO:<postmaster@bounce.bank.example>')
            if ((await c.cmd('DATA')).code !== 354) continue
            const line = Buffer.from(`X-Filler: ${'x'.repeat(1000)}\r\n`)
            const mb = Buffer.concat(Array.from({ length: 1024 }, () => line))
            for (let i = 0; i < 10; i++) {
              if (c.closed) break
              const more = c.socket.write(mb)
              if (!more)
                await new Promise((res) => {
                  c.socket.once('drain', res)
                  c.socket.once('close', res)
                })
            }
          } catch {
            // a refused or closed connection is an ending the box chose
          }
        }
      }),
    )
    if (process.env.SG_REL_DEBUG) {
      const me = process.cpuUsage(me0)
      process.stderr.write(
        `round ${r}: ${Date.now() - w0} ms wall, box CPU ${(cpu() - c0).toFixed(2)} s, load generator CPU ${((me.user + me.system) / 1e6).toFixed(2)} s\n`,
      )
    }
    await sleep(2000)
    const peak = box.peakRss()
    if (process.env.SG_REL_DEBUG) {
      const m = ((await box.status()) as { memory?: Record<string, unknown> }).memory ?? {}
      process.stderr.write(`round ${r} memory before closing: ${JSON.stringify(m)}\n`)
    }
    for (const c of conns) c.close()
    await sleep(2000)
    return { open: conns.filter((c) => !c.closed).length, peak }
  }
  const first = await round(1)
  const second = await round(2)
  const good = await goodThread.stop()
  if (process.env.SG_REL_DEBUG) process.stderr.write(`good DSN latencies in order: ${good.ms.join(' ')}\n`)
  const status = await box.status()
  await box.kill('SIGTERM')
  await rx.close()
  const worstGood = Math.max(...good.ms)
  row(
    'return path: 1,000 half-sent 10 MB reports from 100 addresses, twice (defaults: memoryBudgetBytes 64 MiB, maxClients 2,000)',
    `RSS idle ${(idle / MB).toFixed(0)} MB; peak (VmHWM) above idle after the first round ${((first.peak - idle) / MB).toFixed(0)} MB, after the second ` +
      `${((second.peak - idle) / MB).toFixed(0)} MB (target ≤ 150 MB, and the second round not raising it by more than 16 MB); good DSN to postmaster every 200 ms (its own thread): ${good.ms.length} answered 250, ` +
      `${good.failed} not, p99 ${pct(good.ms, 0.99)} ms, slowest ${worstGood} ms (target ≤ 1,000 ms); return path ${JSON.stringify((status as { returnPath?: unknown }).returnPath ?? {})}`,
    second.peak - idle <= 150 * MB && second.peak - first.peak <= 16 * MB && good.failed === 0 && worstGood <= 1000,
  )
  rmSync(box.dataDir, { recursive: true, force: true })
}

/** Six connections, each 40,000 RCPTs of one real token address and a report, while the firm submits. */
export async function rcptAmplification(): Promise<void> {
  const rx = await receiver()
  const senders = rx.senders
  const box = await Box.create(routeTo(rx.port))
  await box.start()
  const first = await goodSubmission(box, 'AMP-1')
  const end = Date.now() + 30_000
  while (!senders.has('AMP-1') && Date.now() < end) await sleep(100)
  const token = senders.get('AMP-1')
  if (first.code !== 250 || !token) {
    row('return path: 6 × 40,000 repeated RCPTs', `setup failed: the statement was not delivered (${first.code}, sender ${token})`, false)
    await box.kill('SIGTERM')
    await rx.close()
    return
  }
  const good = sampler(async () => {
    const r = await goodSubmission(box, `AMPGOOD-${Date.now()}`)
    return { ok: r.code === 250, ms: r.ms }
  }, 250)
  const t0 = Date.now()
  const replies = new Map<number, number>()
  const count = (code: number) => replies.set(code, (replies.get(code) ?? 0) + 1)
  let reports = 0
  let rcpts = 0
  const dsn =
    `From: MAILER-DAEMON@mx.example.net\r\nSubject: Delayed Mail\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n` +
    `--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; customer@example.net\r\n` +
    `Action: delayed\r\nStatus: 4.2.2\r\n\r\n--R--\r\n.\r\n`
  const session = async (address: string, n: number) => {
    const c = await RawSmtp.open(box.ports['return-path']!, { localAddress: address })
    try {
      await c.reply()
      await c.cmd('EHLO mx.example.net')
      await c.cmd('MAIL FROM:<>')
      c.write(`RCPT TO:<${token}>\r\n`.repeat(n))
      rcpts += n
      for (let i = 0; i < n; i++) {
        const r = await c.reply(60_000)
        count(r.code)
        if (r.code === 421) return
      }
      if ((await c.cmd('DATA')).code !== 354) return
      c.write(dsn)
      const r = await c.reply()
      count(r.code)
      if (r.code === 250) reports++
    } catch {
      // cut off
    } finally {
      c.close()
    }
  }
  // Each of six addresses for 10 s: 40,000 RCPTs of the token in one transaction (cut off after
  // 1,000), then 1,000 of them and a report, and again.
  const until = Date.now() + 10_000
  await Promise.all(
    Array.from({ length: 6 }, async (_, k) => {
      while (Date.now() < until) {
        await session(`127.0.20.${k + 1}`, 40_000)
        await session(`127.0.20.${k + 1}`, 1000)
      }
    }),
  )
  const took = Date.now() - t0
  await sleep(1000)
  await good.stop()
  await box.kill('SIGTERM')
  await rx.close()
  let records = 0
  for await (const r of searchTrail(join(box.dataDir, 'audit'), { type: 'returnpath.report' })) if (r.type === 'returnpath.report') records++
  const slowest = Math.max(...good.ms)
  row(
    'return path: 6 addresses × (40,000 RCPTs of one token; 1,000 and a report), for 10 s (defaults)',
    `${took} ms, ${rcpts} RCPTs sent; replies by code ${JSON.stringify(Object.fromEntries(replies))}; audit records written: ${records} for ${reports} reports accepted ` +
      `(target ≤ 1 per report); good submissions meanwhile (a connection each, STARTTLS, AUTH): ${good.ms.length} answered 250, ` +
      `${good.failed()} not, slowest ${slowest} ms (target ≤ 1,000 ms)`,
    records <= reports && good.failed() === 0 && slowest <= 1000,
  )
  rmSync(box.dataDir, { recursive: true, force: true })
}

/** Wrong passwords from 100 addresses for 30 s while the firm's host (it logged in before) and a new one submit. */
export async function authFlood(): Promise<void> {
  const rx = await receiver()
  const box = await Box.create(routeTo(rx.port))
  await box.start()
  const warm = await goodSubmission(box, 'AUTH-WARM')
  const known = sampler(async () => {
    const r = await goodSubmission(box, `AUTHGOOD-${Date.now()}`)
    return { ok: r.code === 250, ms: r.ms }
  }, 1000)
  let fresh = 0
  const newcomer = sampler(async () => {
    const r = await goodSubmission(box, `AUTHNEW-${Date.now()}`, `127.0.31.${++fresh}`)
    return { ok: r.code === 250, ms: r.ms }
  }, 3000)
  let attempts = 0
  const answers = new Map<number, number>()
  const end = Date.now() + 30_000
  await Promise.all(
    Array.from({ length: 100 }, async (_, a) => {
      while (Date.now() < end) {
        const c = await RawSmtp.open(box.port, { localAddress: `127.0.30.${a + 1}` }).catch(() => undefined)
        if (!c) continue
        try {
          await c.handshake(box.tls)
          const r = await c.authPlain('statements', 'not the password')
          attempts++
          answers.set(r.code, (answers.get(r.code) ?? 0) + 1)
        } catch {
          // cut off: try again
        } finally {
          c.close()
        }
      }
    }),
  )
  await known.stop()
  await newcomer.stop()
  await box.kill('SIGTERM')
  await rx.close()
  const slowest = Math.max(...known.ms)
  row(
    'AUTH flood: wrong passwords from 100 addresses for 30 s (defaults)',
    `${attempts} attempts, answered ${JSON.stringify(Object.fromEntries(answers))}; the firm's host (it had logged in before: ${warm.code}) ` +
      `submitting each second: ${known.ms.length} answered 250, ${known.failed()} not, p99 ${pct(known.ms, 0.99)} ms, slowest ${slowest} ms (target ≤ 1,000 ms); ` +
      `a host never seen before, every 3 s: ${newcomer.ms.length} answered 250, ${newcomer.failed()} not, slowest ${Math.max(...newcomer.ms)} ms (no target: it waits its turn)`,
    known.failed() === 0 && slowest <= 1000 && warm.code === 250,
  )
  rmSync(box.dataDir, { recursive: true, force: true })
}

/** Thirty 28 MB statements at once without SIZE=: room in arrival order lets the first ones through. */
export async function bigWithoutSize(): Promise<void> {
  const rx = await receiver()
  const box = await Box.create(routeTo(rx.port))
  await box.start()
  const pdf = Buffer.alloc(27 * MB, 'QUJD')
    .toString('latin1')
    .replace(/.{76}/g, '$&\r\n')
  const mail = Buffer.from(
    'From: statements@bank.example\r\nTo: customer@example.net\r\nSubject: =?UTF-8?B?5pyJ5YO56K2J5Yi45pyI5bCN5biz5Zau?=\r\nX-Statement-ID: BIG\r\nMIME-Version: 1.0\r\n' +
      `Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n${pdf}\r\n.\r\n`,
  )
  const codes = new Map<string, number>()
  const t0 = Date.now()
  await Promise.all(
    Array.from({ length: 30 }, async (_, k) => {
      const c = await RawSmtp.open(box.port, { localAddress: `127.0.40.${1 + (k % 6)}` })
      try {
        await c.handshake(box.tls)
        await c.authPlain('statements', box.password)
        const from = await c.cmd('MAIL FROM:<statements@bank.example>')
        let key = `MAIL ${from.code}`
        if (from.code === 250) {
          await c.cmd('RCPT TO:<customer@example.net>')
          await c.cmd('DATA')
          c.write(mail)
          const r = await c.reply(300_000)
          key = `DATA ${r.code}${r.code === 250 ? '' : ` ${r.text.slice(0, 60)}`}`
        }
        codes.set(key, (codes.get(key) ?? 0) + 1)
      } finally {
        c.close()
      }
    }),
  )
  const st = (await box.status()) as { memory?: { submission?: { peak: number; limit: number; evictions: number } } }
  await box.kill('SIGTERM')
  await rx.close()
  const accepted = codes.get('DATA 250') ?? 0
  row(
    `30 × ${(mail.length / MB).toFixed(0)} MB submitted at once without SIZE= (defaults: memoryBudgetBytes 1 GiB, undeclaredReserveBytes 1 MiB)`,
    `${((Date.now() - t0) / 1000).toFixed(0)} s; answers ${JSON.stringify(Object.fromEntries(codes))}; accepted ${accepted} (target ≥ 8); memory ${JSON.stringify(st.memory?.submission ?? {})}`,
    accepted >= 8,
  )
  rmSync(box.dataDir, { recursive: true, force: true })
}

/** 500 failed TLS handshakes on each TLS listener from one address: how many log lines each costs. */
export async function handshakeLogLines(): Promise<void> {
  const rx = await receiver()
  const box = await Box.create((c) => {
    routeTo(rx.port)(c)
    Object.assign((c.reports as { tracking: object }).tracking, { baseUrl: 'https://track.bank.example' })
  })
  await box.start()
  const counts: string[] = []
  let worst = 0
  for (const listener of LISTENERS.filter((l): l is Exclude<ListenerName, 'tracking'> => l !== 'tracking')) {
    const before = box.log.length
    for (let i = 0; i < 500; i++) {
      const w = await Wire.open(box.ports[listener]!, '127.0.50.1')
      if (listener === 'submission-starttls' || listener === 'return-path') {
        await w.until(/^220 .*\r\n/)
        w.write('EHLO x\r\nSTARTTLS\r\n')
        await w.until(/TLS/)
      }
      w.write(HALF_HELLO)
      w.write(Buffer.alloc(600, 0x41))
      await w.closedWithin(5000)
    }
    await sleep(300)
    const lines = box.log.slice(before).filter((l) => l.includes('"level":') && !l.includes('"level":20')).length
    worst = Math.max(worst, lines)
    counts.push(`${listener} ${lines}`)
  }
  const alive = box.alive
  await box.kill('SIGTERM')
  await rx.close()
  row(
    '500 failed TLS handshakes from one address on each TLS listener (defaults)',
    `log lines (info and above) per listener: ${counts.join(', ')} (target: a handful, not 500); box alive ${alive}`,
    alive && worst <= 5,
  )
  rmSync(box.dataDir, { recursive: true, force: true })
}
