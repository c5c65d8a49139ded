import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { RawSmtp } from '../../helpers/smtp.ts'
import { dsnFor, startReturnPath } from '../../helpers/returnpath.ts'

/**
 * #29 findings 2–4: what a client on the internet may cost the return path.
 * Memory for reports has a budget for all connections together; one report
 * makes at most a few audit records however many RCPTs it repeats; and
 * failed handshakes are counted, not logged one line each with a stack.
 */

/** Greeting, EHLO, MAIL FROM:<>, RCPT TO:<to>, DATA (354), from `localAddress`. */
async function intoData(port: number, to: string, localAddress = '127.0.0.1'): Promise<RawSmtp> {
  const c = await RawSmtp.open(port, { localAddress })
  await c.reply()
  await c.cmd('EHLO mx.example.net')
  await c.cmd('MAIL FROM:<>')
  const rcpt = await c.cmd(`RCPT TO:<${to}>`)
  if (rcpt.code !== 250) throw new Error(`RCPT ${rcpt.code} ${rcpt.text}`)
  const data = await c.cmd('DATA')
  if (data.code !== 354) throw new Error(`DATA ${data.code} ${data.text}`)
  return c
}

t.test('a memory budget for all connections: 20 half-sent reports hold what it allows, the 21st large one gets 452, a small DSN is still taken', async (t) => {
  const budget = 2 * 1024 * 1024
  const rp = await startReturnPath(t, { memoryBudgetBytes: budget, maxClients: 64, maxConnectionsPerClient: 5 })
  const half: RawSmtp[] = []
  const chunk = `X-Filler: ${'x'.repeat(990)}\r\n`.repeat(200) // 200 KB
  for (let i = 0; i < 20; i++) {
    const c = await intoData(rp.port, rp.mint(), `127.0.3.${1 + Math.floor(i / 5)}`)
    c.write(`From: MAILER-DAEMON@mx.example.net\r\nSubject: x\r\n${chunk}`)
    half.push(c)
  }
  await sleep(300)
  const mem = rp.listener.counts.memory
  t.ok(mem.used <= mem.limit, `the pool holds ${mem.used} of ${mem.limit} bytes (counted twice)`)
  t.ok(mem.evictions > 0, `later reports gave way to earlier ones (${mem.evictions})`)
  t.ok(
    half.slice(-5).every((c) => c.closed),
    'those that gave way were cut off',
  )
  t.notOk(half[0]!.closed, 'the first keeps its room and its connection')

  const late = await intoData(rp.port, rp.mint(), '127.0.3.9')
  late.write(`From: MAILER-DAEMON@mx.example.net\r\nSubject: x\r\n${chunk}${chunk}\r\n.\r\n`)
  const refused = await late.reply()
  t.equal(
    `${refused.code} ${refused.text}`,
    '421 4.3.1 no room for the report now; closing, try again later',
    'a large report that finds no room is cut off at once (421: the sender retries later)',
  )
  await sleep(100)
  t.ok(late.closed, 'and its connection closed')

  const good = await intoData(rp.port, rp.mint(), '127.0.3.10')
  good.write(`${dsnFor('wang@example.net')}.\r\n`)
  t.equal((await good.reply()).code, 250, "a small DSN fits its connection's own share: taken while the pool is spent")
  good.close()
  t.equal(rp.events.filter((e) => e.type === 'returnpath.report').length, 1, 'one report recorded')

  for (const c of half) c.close()
  await sleep(200)
  t.equal(rp.listener.counts.memory.used, 0, 'every byte of room given back when the clients leave')
})

t.test('one token repeated 1,000 times is one reference and one audit record; more distinct tokens than a report needs get 452', async (t) => {
  const rp = await startReturnPath(t)
  const token = rp.mint()
  const c = await RawSmtp.open(rp.port)
  await c.reply()
  await c.cmd('EHLO mx.example.net')
  await c.cmd('MAIL FROM:<>')
  c.write(`RCPT TO:<${token}>\r\n`.repeat(1000))
  const replies = []
  for (let i = 0; i < 1000; i++) replies.push((await c.reply()).code)
  t.equal(replies.filter((r) => r === 250).length, 100, 'the first 100 RCPTs answered 250 (the same address counts once)')
  t.ok(
    replies.slice(100).every((r) => r === 452),
    'the rest 452 4.5.3',
  )
  t.equal((await c.cmd('DATA')).code, 354)
  c.write(`${dsnFor('wang@example.net', 'delayed', '4.2.2')}.\r\n`)
  t.equal((await c.reply()).code, 250)
  const reports = rp.events.filter((e) => e.type === 'returnpath.report')
  t.equal(reports.length, 1, 'one audit record for the report')

  await c.cmd('MAIL FROM:<>')
  const codes = []
  for (let i = 0; i < 7; i++) codes.push((await c.cmd(`RCPT TO:<${rp.mint({ recipient: i })}>`)).code)
  t.same(codes, [250, 250, 250, 250, 250, 452, 452], 'five distinct tokens (returnPath.maxRecipientsPerReport), then 452')
  c.close()
})

t.test('an RCPT flood is cut off: after 1,000 RCPTs in a transaction the client gets 421', async (t) => {
  const rp = await startReturnPath(t)
  const c = await RawSmtp.open(rp.port)
  await c.reply()
  await c.cmd('EHLO mx.example.net')
  await c.cmd('MAIL FROM:<>')
  c.write('RCPT TO:<postmaster@bounce.bank.example>\r\n'.repeat(1001))
  let last = { code: 0, text: '' }
  for (let i = 0; i < 1001; i++) last = await c.reply()
  t.equal(`${last.code} ${last.text}`, '421 4.5.3 too many recipients; closing the connection')
})

t.test('the per-address budget counts audit records, not reports', async (t) => {
  const rp = await startReturnPath(t, { reportsPerMinutePerClient: 6 })
  const c = await RawSmtp.open(rp.port)
  await c.reply()
  await c.cmd('EHLO mx.example.net')
  const send = async (n: number) => {
    await c.cmd('MAIL FROM:<>')
    for (let i = 0; i < n; i++) await c.cmd(`RCPT TO:<${rp.mint({ recipient: i })}>`)
    await c.cmd('DATA')
    c.write(`${dsnFor('wang@example.net', 'delayed', '4.2.2')}.\r\n`)
    return (await c.reply()).code
  }
  t.equal(await send(5), 250, 'five records')
  t.equal(await send(2), 421, 'two more would make seven in a minute: refused')
  t.equal(rp.events.filter((e) => e.type === 'returnpath.report').length, 5)
})

t.test('failed TLS handshakes: one info line per address, no stack, every one counted', async (t) => {
  const rp = await startReturnPath(t)
  for (let i = 0; i < 30; i++) {
    const c = await RawSmtp.open(rp.port)
    await c.reply()
    await c.cmd('EHLO mx.example.net')
    await c.cmd('STARTTLS')
    c.write(Buffer.from('16030100c8010000c40303', 'hex'))
    c.write(Buffer.alloc(300, 0x41))
    await new Promise<void>((resolve) => {
      if (c.closed) return resolve()
      c.socket.once('close', () => resolve())
    })
  }
  await sleep(100)
  const lines = rp.records.filter((r) => String(r.msg).startsWith('client error'))
  t.equal(lines.length, 1, 'one line for thirty failed handshakes from one address')
  t.equal(lines[0]?.level, 30, 'at info level')
  t.notOk(JSON.stringify(rp.records).includes('"stack"'), 'no stack anywhere in the log')
  t.equal(rp.listener.counts.clientErrors.tls, 30, `every one counted, once (${JSON.stringify(rp.listener.counts.clientErrors)})`)
})

t.test('#35: the return path keeps smtp-server’s pause before the greeting: a client that talks first gets 421', async (t) => {
  const rp = await startReturnPath(t)
  t.equal(rp.config.returnPath.greetingDelayMs, 100, 'default: smtp-server’s 100 ms')
  const early = await RawSmtp.open(rp.port)
  early.write('EHLO spam-engine.example\r\n')
  t.match(await early.reply(), { code: 421, text: /talk too soon/ })
  early.close()
  const patient = await RawSmtp.open(rp.port)
  t.equal((await patient.reply()).code, 220, 'one that waits is greeted')
  t.equal((await patient.cmd('EHLO mx.example.net')).code, 250)
  patient.close()
})
