import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createServer, type Server, type TLSSocket } from 'node:tls'
import t from 'tap'
import { SyslogForwarder } from '../../../firmware/audit/syslog.ts'
import { makeSelfSignedServerCert } from '../../../hal/crypto/selfsigned.ts'
import { auditRig } from '../../helpers/audit.ts'
import { tempDir } from '../../helpers/box.ts'
import { logSink } from '../../helpers/logs.ts'
import { until } from '../../helpers/receiver.ts'

interface Received {
  seq: number
  header: string
  record: Record<string, unknown>
}

/** A loopback SIEM: TLS, RFC 5425 octet-counted RFC 5424 messages. */
function siem(cert: { certPem: string; keyPem: string }) {
  const received: Received[] = []
  const sockets = new Set<TLSSocket>()
  const server: Server = createServer({ cert: cert.certPem, key: cert.keyPem, minVersion: 'TLSv1.2' }, (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let buf = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      for (;;) {
        const sp = buf.indexOf(0x20)
        if (sp < 0) break
        const len = Number(buf.subarray(0, sp).toString())
        if (buf.length < sp + 1 + len) break
        const msg = buf.subarray(sp + 1, sp + 1 + len).toString()
        buf = buf.subarray(sp + 1 + len)
        const bom = msg.indexOf('\uFEFF')
        received.push({
          seq: Number(/seq="(\d+)"/.exec(msg)![1]),
          header: msg.slice(0, bom),
          record: JSON.parse(msg.slice(bom + 1)) as Record<string, unknown>,
        })
      }
    })
  })
  return {
    received,
    listen: (port = 0) => new Promise<number>((resolve) => server.listen(port, '127.0.0.1', () => resolve((server.address() as { port: number }).port))),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}

t.test('S6/S10: the trail goes to the SIEM as RFC 5424 over TLS; an outage loses nothing and order is kept', async (t) => {
  const cert = makeSelfSignedServerCert({ hostname: 'siem.localhost', addresses: ['127.0.0.1'] })
  const caFile = join(tempDir(t), 'siem-ca.pem')
  writeFileSync(caFile, cert.certPem)
  const receiver = siem(cert)
  const port = await receiver.listen()
  t.teardown(() => receiver.close())
  const rig = await auditRig(t, { syslog: { host: '127.0.0.1', port, caFile, serverName: 'siem.localhost', retrySeconds: 1, replayOverlap: 3 } })
  const fwd = new SyslogForwarder({ config: rig.config, log: logSink().log, trail: rig.trail })
  await fwd.start()
  t.teardown(() => fwd.stop())
  const emit = (from: number, to: number) => {
    for (let i = from; i <= to; i++) rig.trail.emit({ type: 'spool.queued', id: `Q${i}`, epoch: 'e', bytes: i })
  }

  emit(1, 20)
  await rig.trail.flush()
  await until(() => receiver.received.some((r) => r.seq === 21))
  t.match(receiver.received[0]!.header, /^<110>1 2026-11-22T08:00:00\.000Z statement-gateway statement-gateway - audit\.started \[sgw@32473 seq="1"\] $/)
  t.match(receiver.received.at(-1)!.record, { seq: 21, type: 'spool.queued', id: 'Q20' })

  await receiver.close()
  emit(21, 60) // the SIEM is down meanwhile
  await rig.trail.flush()
  await new Promise((r) => setTimeout(r, 1500))
  await receiver.listen(port)
  emit(61, 70)
  await rig.trail.flush()
  await until(() => receiver.received.some((r) => r.seq === 71), 20_000)

  const seqs = receiver.received.map((r) => r.seq)
  const unique = [...new Set(seqs)]
  t.same(
    unique,
    Array.from({ length: 71 }, (_, i) => i + 1),
    'every record from seq 1 to 71 arrived, first copies in order',
  )
  t.ok(seqs.length - unique.length <= 3, `duplicates only from the replay overlap (${seqs.length - unique.length})`)
  for (const r of receiver.received) t.equal(r.record.seq, r.seq, 'the message is the trail record itself')
})
