import { rmSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { CASES, GOOD_ANSWER, HALF_HELLO, LISTENERS, Wire, goodClient, playCase, type ListenerName, type Target } from '../helpers/lifecycle.ts'
import { Box } from './box.ts'
import { receiver, routeTo, row } from './mx.ts'

/** Silent connections the box never ended: what was sent before the silence. */
const stuck: string[] = []

/** A small seeded generator (mulberry32): the same seed replays the same connections. */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** The bytes of a whole good session of `listener`: before TLS, whether TLS comes, and after it. */
function script(target: Target, listener: ListenerName): { pre: string; tls: boolean; post: string } {
  const auth = `AUTH PLAIN ${Buffer.from(`\0${target.account.name}\0${target.account.password}`).toString('base64')}\r\n`
  const mail = `MAIL FROM:<statements@bank.example>\r\nRCPT TO:<customer@example.net>\r\nDATA\r\nFrom: statements@bank.example\r\nTo: customer@example.net\r\nSubject: cut\r\n\r\n${'A statement line.\r\n'.repeat(40)}.\r\nQUIT\r\n`
  const report = `MAIL FROM:<>\r\nRCPT TO:<postmaster@bounce.bank.example>\r\nDATA\r\nFrom: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered\r\n\r\n${'A notice line.\r\n'.repeat(40)}.\r\nQUIT\r\n`
  const http = (path: string) =>
    `POST ${path} HTTP/1.1\r\nHost: box\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n${'user=a&password=b&'.repeat(12).slice(0, 200)}`
  switch (listener) {
    case 'submission-starttls':
      return { pre: 'EHLO fuzz.test\r\nSTARTTLS\r\n', tls: true, post: `EHLO fuzz.test\r\n${auth}${mail}` }
    case 'submission-implicit':
      return { pre: '', tls: true, post: `EHLO fuzz.test\r\n${auth}${mail}` }
    case 'return-path':
      return { pre: `EHLO fuzz.test\r\n${report}`, tls: false, post: '' }
    case 'admin':
      return { pre: '', tls: true, post: http('/login') }
    case 'tracking':
      return { pre: http('/o/abc'), tls: false, post: '' }
  }
}

/**
 * One connection cut at a random point of a good session — before or in the
 * TLS handshake, in a command, in the data — and then left with a FIN, an
 * RST, or silence until the box ends it. Resolves when it is over; 'stuck'
 * if the box never ended a silent connection.
 */
async function cut(target: Target, listener: ListenerName, rnd: () => number, localAddress: string): Promise<'ok' | 'stuck' | 'refused'> {
  const w = await Wire.open(target.ports[listener], localAddress).catch(() => undefined)
  if (!w) return 'refused'
  const s = script(target, listener)
  const total = s.pre.length + (s.tls ? 1 : 0) + s.post.length
  const at = Math.floor(rnd() * (total + 1))
  const end = (['fin', 'rst', 'idle'] as const)[Math.floor(rnd() * 3)]!
  try {
    const smtp = listener !== 'admin' && listener !== 'tracking'
    if (smtp && listener !== 'submission-implicit') await w.until(/^220 .*\r\n/, 3000)
    if (at <= s.pre.length) w.write(s.pre.slice(0, at))
    else {
      w.write(s.pre)
      if (s.tls && at === s.pre.length + 1) w.write(HALF_HELLO.subarray(0, 1 + Math.floor(rnd() * HALF_HELLO.length)))
      else {
        if (s.tls) {
          if (s.pre) await w.until(/^220 [^\r\n]*\r\n(?![\s\S])/m, 3000)
          await w.tls({ ...target.tls, ...(listener === 'admin' ? { ALPNProtocols: ['http/1.1'] } : {}) })
          if (listener === 'submission-implicit') await w.until(/^220 .*\r\n/, 3000)
        }
        w.write(s.post.slice(0, at - s.pre.length - (s.tls ? 1 : 0)))
      }
    }
    await sleep(rnd() * 50)
    if (end === 'idle') {
      if ((await w.closedWithin(15_000)) !== undefined) return 'ok'
      stuck.push(
        `${listener} cut at ${at} of ${total} (${JSON.stringify(at <= s.pre.length ? s.pre.slice(Math.max(0, at - 30), at) : s.post.slice(Math.max(0, at - s.pre.length - 31), at - s.pre.length - 1))})`,
      )
      return 'stuck'
    }
    w.leave(end)
    return 'ok'
  } catch {
    return 'ok' // the box closed first (a refusal, a limit): that is an ending too
  } finally {
    if (!w.closed) w.socket.destroy()
  }
}

/**
 * #29: at least `connections` random connections from eight loopback
 * addresses over all five listeners, each ending a way a client can end one;
 * meanwhile a good client per listener each second. Fails on any exit or
 * signal of the daemon, a silent connection the box never ended, or a good
 * client not served.
 */
export async function lifecycleFuzz(connections: number, seed: number): Promise<void> {
  const rx = await receiver()
  // Short deadlines so that silence ends in seconds; authentication gets three, which a good client
  // (TLS, the greeting pause, a password check behind the fuzz's own) needs under this load.
  const short = 1000
  const auth = 3000
  const overrides = `socketTimeoutMs, returnPath.socketTimeoutMs, admin.requestTimeoutMs, tracking.requestTimeoutMs = ${short} ms; authTimeoutMs ${auth} ms; tracking on`
  const box = await Box.create((c) => {
    routeTo(rx.port)(c)
    Object.assign(c.submission as object, { authTimeoutMs: auth, socketTimeoutMs: short })
    Object.assign(c.returnPath as object, { socketTimeoutMs: short })
    Object.assign(c.admin as object, { requestTimeoutMs: short })
    const reports = c.reports as { tracking: Record<string, unknown> }
    Object.assign(reports.tracking, { baseUrl: 'https://track.bank.example', requestTimeoutMs: short })
  })
  await box.start()
  const target = box.target
  const rnd = prng(seed)
  const addresses = Array.from({ length: 8 }, (_, i) => `127.0.0.${51 + i}`)
  const outcomes = { ok: 0, stuck: 0, refused: 0, cases: 0 }
  let started = 0
  const worker = async (address: string) => {
    while (started < connections && box.alive) {
      started++
      const listener = LISTENERS[Math.floor(rnd() * LISTENERS.length)]!
      if (rnd() < 0.3) {
        const kind = CASES[Math.floor(rnd() * CASES.length)]!
        await playCase(target, listener, kind, address).catch(() => undefined)
        outcomes.cases++
      } else outcomes[await cut(target, listener, rnd, address)]++
    }
  }
  const good = new Map<ListenerName, number[]>(LISTENERS.map((l) => [l, []]))
  const badGood: string[] = []
  let stop = false
  const goodLoop = (async () => {
    while (!stop && box.alive) {
      const tick = sleep(1000)
      await Promise.all(
        LISTENERS.map(async (l) => {
          const t0 = Date.now()
          const answer = await goodClient(target, l, '127.0.0.1').catch((e: Error) => e.message)
          if (answer === GOOD_ANSWER[l]) good.get(l)!.push(Date.now() - t0)
          else badGood.push(`${l}: ${answer}`)
        }),
      )
      await tick
    }
  })()
  const t0 = Date.now()
  await Promise.all(addresses.flatMap((a) => [0, 1, 2, 3].map(() => worker(a))))
  stop = true
  await goodLoop
  const alive = box.alive
  const code = alive ? await box.kill('SIGTERM') : box.proc?.exitCode
  const signal = box.proc?.signalCode
  await rx.close()
  const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.max(0, Math.ceil(xs.length * 0.99) - 1)] ?? NaN
  const goods = LISTENERS.map((l) => `${l} ${good.get(l)!.length}× p99 ${p99(good.get(l)!)} ms`).join('; ')
  row(
    `lifecycle fuzz: ${started} random connections from 8 addresses over 5 listeners (seed ${seed}; ${overrides})`,
    `${((Date.now() - t0) / 1000).toFixed(0)} s; structured cases ${outcomes.cases}, random cuts ${outcomes.ok + outcomes.stuck + outcomes.refused} ` +
      `(silent ones never ended by the box: ${outcomes.stuck}${stuck.length ? ` — ${stuck.slice(0, 5).join('; ')}` : ''}; refused at connect: ${outcomes.refused}); daemon alive throughout ${alive}, ` +
      `stopped with exit ${code}${signal ? ` signal ${signal}` : ''}; good clients: ${goods}; not served: ${badGood.length}${badGood.length ? ` (${badGood.slice(0, 3).join('; ')})` : ''}`,
    alive && code === 0 && outcomes.stuck === 0 && badGood.length === 0 && started >= connections,
  )
  rmSync(box.dataDir, { recursive: true, force: true })
}
