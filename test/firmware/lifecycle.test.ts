import { setTimeout as sleep } from 'node:timers/promises'
import { connect } from 'node:net'
import t from 'tap'
import { CASES, GOOD_ANSWER, HALF_HELLO, LIFECYCLE_TIMEOUTS, LISTENERS, Wire, goodClient, playCase, startLifecycleBox } from '../helpers/lifecycle.ts'

/**
 * #29 (S11, S12; DESIGN "every listener survives every client"): whatever a
 * client does at any phase of a connection — silence, half a TLS hello, quiet
 * after the handshake, leaving with a FIN or an RST in the middle of a
 * command or of the data — ends that connection and nothing else. The real
 * daemon, as a child process, with every listener's deadlines short.
 */

t.test('#29 finding 1: idle connections to the implicit-TLS port, past authTimeoutMs, do not kill the daemon', async (t) => {
  const box = await startLifecycleBox(t)
  const port = box.ports['submission-implicit']
  // Silence, and half a ClientHello: before the fix the raw socket was destroyed under the TLS
  // wrap smtp-server had made, and Node read a freed SSL object (SIGSEGV, exit 139).
  const sockets = Array.from({ length: 5 }, (_, i) => {
    const s = connect(port, '127.0.0.1')
    s.on('error', () => {})
    if (i % 2) s.write(HALF_HELLO)
    return s
  })
  await sleep(LIFECYCLE_TIMEOUTS.authMs * 4)
  t.ok(box.alive(), `the daemon is alive ${LIFECYCLE_TIMEOUTS.authMs * 4} ms later (authTimeoutMs ${LIFECYCLE_TIMEOUTS.authMs})`)
  t.ok(
    sockets.every((s) => s.destroyed || s.readableEnded),
    'and it closed every one of them',
  )
  t.equal(await goodClient(box, 'submission-implicit'), '250', 'a good client gets its 250')
  t.ok(
    box.child.records.some((r) => r.msg?.toString().startsWith('client error') && r.kind === 'auth-timeout'),
    'the deadline is logged as the client’s',
  )
})

t.test('the lifecycle matrix: every listener × every way a connection ends', async (t) => {
  const box = await startLifecycleBox(t)
  const rows: string[] = []
  await Promise.all(
    LISTENERS.map(async (listener) => {
      for (const kind of CASES) {
        const { closedByBoxMs } = await playCase(box, listener, kind)
        const idle = kind.startsWith('idle') || kind === 'half a TLS hello'
        if (idle) t.ok(closedByBoxMs !== undefined, `${listener} / ${kind}: the box ended the connection (after ${closedByBoxMs} ms)`)
        t.ok(box.alive(), `${listener} / ${kind}: the daemon is alive`)
        const answer = await goodClient(box, listener).catch((err: Error) => `failed: ${err.message}`)
        t.equal(answer, GOOD_ANSWER[listener], `${listener} / ${kind}: a good client is served`)
        rows.push(`${listener.padEnd(20)} ${kind.padEnd(26)} ${idle ? `closed by the box after ${closedByBoxMs} ms` : 'client left'}; good client: ${answer}`)
      }
    }),
  )
  t.comment(rows.sort().join('\n'))
  box.child.proc.kill('SIGTERM')
  t.same(await box.child.exited, { code: 0, signal: null }, 'and it stops cleanly')
})

t.test('admin: a login refused before its body came (rate limit) is not kept open for the next request', async (t) => {
  const box = await startLifecycleBox(t)
  // fastify kept such a connection 72 s (its keep-alive default) waiting for the rest of the body.
  const held = await Promise.all(
    Array.from({ length: 14 }, async () => {
      const w = await Wire.open(box.ports.admin)
      await w.tls({ ...box.tls, ALPNProtocols: ['http/1.1'] })
      w.write('POST /login HTTP/1.1\r\nHost: box\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\nuser=a&pass')
      return { ms: await w.closedWithin(10_000), answer: w.buffer.slice(0, 12) }
    }),
  )
  t.ok(
    held.some((h) => h.answer.includes('429')),
    'some were refused by the login rate limit',
  )
  t.ok(
    held.every((h) => h.ms !== undefined && h.ms < LIFECYCLE_TIMEOUTS.socketMs * 6),
    `every one closed by the box: ${held.map((h) => h.ms).join(', ')} ms`,
  )
})
