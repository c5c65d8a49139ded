import { createServer, type AddressInfo } from 'node:net'
import SMTPConnection from 'nodemailer/lib/smtp-connection'
import t from 'tap'
import { SmtpClient, SmtpError } from '../../../firmware/delivery/client.ts'

/** A scripted SMTP server on loopback that records every chunk it reads. */
async function scripted(t: { teardown(fn: () => unknown): void }, opts: { pipelining: boolean }) {
  const chunks: string[] = []
  const bodies: string[] = []
  const server = createServer((s) => {
    let buf = ''
    let inData = false
    let valid = 0
    s.write('220 scripted ESMTP\r\n')
    s.on('data', (d: Buffer) => {
      chunks.push(d.toString('latin1'))
      buf += d.toString('latin1')
      for (;;) {
        if (inData) {
          const end = buf.indexOf('\r\n.\r\n')
          if (end < 0) return
          bodies.push(buf.slice(0, end))
          buf = buf.slice(end + 5)
          inData = false
          s.write('250 2.0.0 queued\r\n')
          continue
        }
        const nl = buf.indexOf('\r\n')
        if (nl < 0) return
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 2)
        const verb = line.split(/[ :]/)[0]!.toUpperCase()
        if (verb === 'EHLO') s.write(`250-scripted\r\n${opts.pipelining ? '250-PIPELINING\r\n' : ''}250 SIZE 10000000\r\n`)
        else if (verb === 'MAIL' || verb === 'RSET') {
          valid = 0
          s.write(verb === 'MAIL' ? '250 2.1.0 ok\r\n' : '250 2.0.0 ok\r\n')
        } else if (verb === 'RCPT') {
          if (line.includes('<bad')) s.write('550 5.1.1 no such user\r\n')
          else {
            valid++
            s.write('250 2.1.5 ok\r\n')
          }
        } else if (verb === 'DATA') {
          inData = valid > 0
          s.write(valid ? '354 go ahead\r\n' : '554 5.5.1 no valid recipients\r\n')
        } else if (verb === 'QUIT') s.end('221 2.0.0 bye\r\n')
        else s.write('500 5.5.2 what\r\n')
      }
    })
    s.on('error', () => {})
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise((r) => server.close(r)))
  const client = new SmtpClient({
    host: '127.0.0.1',
    servername: 'localhost',
    port: (server.address() as AddressInfo).port,
    ehloName: 'box.localhost',
    localAddress: undefined,
    limiters: [],
    tls: 'none',
    timeouts: { connect: 2000, greeting: 2000, command: 2000, data: 2000 },
  })
  await client.connect()
  t.teardown(() => client.close())
  return { client, chunks, bodies }
}

const msg = (n: number) => Buffer.from(`Subject: ${n}\r\n\r\nbody ${n}\r\n`)

t.test('PIPELINING: on a reused connection RSET, MAIL, RCPT and DATA go as one group (two round trips a message)', async (t) => {
  const { client, chunks, bodies } = await scripted(t, { pipelining: true })
  await client.send('statements@bank.example', ['a@example.net'], msg(1))
  const before = chunks.length
  const r = await client.send('statements@bank.example', ['b@example.net', 'c@example.net'], msg(2))
  t.equal(r.reply.code, 250)
  t.same(r.accepted, ['b@example.net', 'c@example.net'])
  const group = chunks.slice(before).find((c) => c.startsWith('RSET'))
  t.equal(
    group,
    'RSET\r\nMAIL FROM:<statements@bank.example> SIZE=22\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n',
    'one write, DATA last (RFC 2920)',
  )
  t.same(bodies, ['Subject: 1\r\n\r\nbody 1', 'Subject: 2\r\n\r\nbody 2'])
})

t.test('PIPELINING: with every recipient refused the body is never sent, and the connection stays usable', async (t) => {
  const { client, bodies } = await scripted(t, { pipelining: true })
  const err = await client.send('statements@bank.example', ['bad1@example.net', 'bad2@example.net'], msg(1)).catch((e: unknown) => e)
  t.ok(err instanceof SmtpError)
  t.match((err as SmtpError).reply, { code: 550 })
  t.same(bodies, [])
  const ok = await client.send('statements@bank.example', ['bad@example.net', 'good@example.net'], msg(2))
  t.same(ok.accepted, ['good@example.net'])
  t.match(ok.rejected, [{ rcpt: 'bad@example.net', reply: { code: 550 } }])
  t.same(bodies, ['Subject: 2\r\n\r\nbody 2'])
})

t.test('without PIPELINING commands go one at a time and DATA only after a recipient was accepted', async (t) => {
  const { client, chunks, bodies } = await scripted(t, { pipelining: false })
  await client.send('statements@bank.example', ['a@example.net'], msg(1))
  const err = await client.send('statements@bank.example', ['bad@example.net'], msg(2)).catch((e: unknown) => e)
  t.ok(err instanceof SmtpError)
  await client.send('statements@bank.example', ['b@example.net'], msg(3))
  t.ok(
    chunks.every((c) => c.split('\r\n').filter(Boolean).length === 1 || c.includes('body')),
    'no grouped commands',
  )
  t.notOk(
    chunks.some((c) => c.startsWith('DATA') && chunks[chunks.indexOf(c) - 1]?.includes('bad@')),
    'no DATA after a refused only recipient',
  )
  t.same(bodies, ['Subject: 1\r\n\r\nbody 1', 'Subject: 3\r\n\r\nbody 3'])
})

t.test('#15 finding 6: replies are read line by line within limits; a hostile server is cut off, not buffered', async (t) => {
  const { ReplyReader, MAX_REPLY_LINE } = await import('../../../firmware/delivery/client.ts')
  const r = new ReplyReader()
  r.push(Buffer.from('250-mx.example\r\n250-PIPE'))
  t.equal(r.next(), undefined, 'half a reply is no reply')
  r.push(Buffer.from('LINING\r\n250 SIZE 1000\r\n220 ready'))
  t.same(r.next(), { code: 250, text: 'mx.example\nPIPELINING\nSIZE 1000' }, 'a multi-line reply, split anywhere')
  r.push(Buffer.from('\r\n'))
  t.same(r.next(), { code: 220, text: 'ready' })
  const long = new ReplyReader()
  long.push(Buffer.from(`250 ${'x'.repeat(MAX_REPLY_LINE)}`))
  t.match(long.violation, /longer than 4096 octets/, 'a line over the limit, even before its end arrives')
  const many = new ReplyReader()
  many.push(Buffer.from('250-x\r\n'.repeat(200)))
  t.match(many.violation, /more than 128 lines/)
  const junk = new ReplyReader()
  junk.push(Buffer.from('HTTP/1.1 400 Bad Request\r\n'))
  t.match(junk.violation, /is no reply line/)
  const mixed = new ReplyReader()
  mixed.push(Buffer.from('250-a\r\n550 b\r\n'))
  t.match(mixed.violation, /changes its code/)

  // A server that answers the greeting with endless bytes and no line end.
  let sent = 0
  const server = createServer((s) => {
    s.on('error', () => {})
    const chunk = Buffer.alloc(64 * 1024, 0x41)
    const pump = () => {
      while (sent < 64 * 1024 * 1024 && s.write(chunk)) sent += chunk.length
      if (sent < 64 * 1024 * 1024 && !s.destroyed) s.once('drain', pump)
    }
    s.write('220')
    pump()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const before = process.memoryUsage()
  const client = new SmtpClient({
    host: '127.0.0.1',
    servername: 'x',
    port: (server.address() as AddressInfo).port,
    localAddress: undefined,
    ehloName: 'box.test',
    tls: 'none',
    limiters: [],
    timeouts: { connect: 2000, greeting: 5000, command: 5000, data: 5000 },
  })
  const err = await client.connect().then(
    () => undefined,
    (e: unknown) => e,
  )
  t.ok(err instanceof SmtpError && err.network, 'a protocol error: the mail is deferred, not bounced')
  t.match((err as Error).message, /protocol error from the server during greeting: a reply line longer than 4096 octets/)
  const grown = process.memoryUsage().arrayBuffers - before.arrayBuffers
  t.ok(sent < 8 * 1024 * 1024, `the connection was dropped early (${(sent / 2 ** 20).toFixed(1)} MB sent of 64)`)
  t.ok(grown < 4 * 1024 * 1024, `memory did not grow with what the server sent (${(grown / 2 ** 20).toFixed(1)} MB)`)
})

t.test('a server that keeps sending replies nobody asked for is cut off too', async (t) => {
  const { ReplyReader } = await import('../../../firmware/delivery/client.ts')
  const r = new ReplyReader()
  r.push(Buffer.from('250 ok\r\n'.repeat(100)))
  t.match(r.violation, /more than 64 replies nobody asked for/)
})

/**
 * #34 spike: nodemailer's SMTPConnection in place of this client. It caps replies
 * (maxResponseSize) and takes a socket of ours, but after the greeting its only
 * timer is an idle one (socketTimeout): a receiving server that trickles its final
 * reply a byte at a time holds the connection — and the mail's delivery slot — for
 * as long as it likes. RFC 5321 §4.5.3.2 gives each phase a deadline; ours keeps it.
 */
t.test('a server that trickles its reply to the dot: ours gives up at the phase deadline, SMTPConnection waits on', async (t) => {
  const server = createServer((s) => {
    let buf = ''
    s.on('error', () => {})
    s.write('220 trickle ESMTP\r\n')
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1')
      for (let nl = buf.indexOf('\r\n'); nl >= 0; nl = buf.indexOf('\r\n')) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 2)
        if (/^EHLO/i.test(line)) s.write('250 trickle\r\n')
        else if (/^(MAIL|RCPT)/i.test(line)) s.write('250 ok\r\n')
        else if (/^DATA/i.test(line)) s.write('354 go ahead\r\n')
        else if (line === '.') {
          s.write('250-')
          const drip = setInterval(() => (s.destroyed ? clearInterval(drip) : s.write('x')), 200)
          s.on('close', () => clearInterval(drip))
        }
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise((r) => server.close(r)))
  const port = (server.address() as AddressInfo).port
  const deadline = 1500

  const ours = new SmtpClient({
    host: '127.0.0.1',
    servername: 'localhost',
    port,
    ehloName: 'box.localhost',
    localAddress: undefined,
    limiters: [],
    tls: 'none',
    timeouts: { connect: 2000, greeting: 2000, command: 2000, data: deadline },
  })
  await ours.connect()
  const started = Date.now()
  const err = await ours.send('statements@bank.example', ['a@example.net'], msg(1)).then(
    () => undefined,
    (e: unknown) => e,
  )
  ours.close()
  t.match(err, { phase: 'data', message: /timeout during data after 1500 ms/ }, 'ours: the phase deadline')
  t.ok(Date.now() - started < deadline + 1000, `given up after ${Date.now() - started} ms`)

  const theirs = new SMTPConnection({ host: '127.0.0.1', port, ignoreTLS: true, socketTimeout: deadline, greetingTimeout: 2000 })
  const outcome = new Promise<string>((resolve) => {
    theirs.on('error', (e: Error) => resolve(`error: ${e.message}`))
    theirs.connect(() => theirs.send({ from: 'statements@bank.example', to: ['a@example.net'] }, msg(1), (e) => resolve(e ? `error: ${e.message}` : 'sent')))
  })
  const after = await Promise.race([outcome, new Promise<string>((r) => setTimeout(() => r('still waiting'), 3 * deadline))])
  theirs.close()
  t.equal(after, 'still waiting', `SMTPConnection with socketTimeout ${deadline} ms: still waiting at ${3 * deadline} ms`)
})
