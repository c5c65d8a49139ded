import { createHmac, timingSafeEqual } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import { join } from 'node:path'
import { makeSelfSignedServerCert } from '../../hal/crypto/selfsigned.ts'
import { tempDir } from './box.ts'

type T = { teardown(fn: () => unknown): void }

export interface Hook {
  id: string
  type: string
  queueId: string
  statementId: string | null
  recipient: string
  recipientIndex: number
  [field: string]: unknown
}

export interface HookReceiver {
  url: string
  caFile: string
  /** Every request that was answered 2xx, in arrival order. */
  accepted: Hook[]
  /** Requests whose signature did not check (should stay empty). */
  badSignatures: number
  /** Bodies seen per event id (a re-sent event must be byte-identical). */
  bodies: Map<string, string>
  /** Answer 2xx or not (a failing endpoint). */
  failing: boolean
  up(secret: Buffer): Promise<void>
  down(): Promise<void>
}

/**
 * The firm's webhook endpoint, on loopback HTTPS with its own self-signed CA:
 * checks each request's signature as the firm would (HMAC-SHA256 of
 * "<t>.<body>", timestamp within five minutes), records what it accepted.
 * Starts down: the port is reserved but nothing listens until up().
 */
export async function hookReceiver(t: T): Promise<HookReceiver> {
  const cert = makeSelfSignedServerCert({ hostname: 'hooks.localhost', addresses: ['127.0.0.1'] })
  const caFile = join(tempDir(t), 'hooks-ca.pem')
  writeFileSync(caFile, cert.certPem)
  let secret: Buffer = Buffer.alloc(0)
  const sockets = new Set<Socket>()
  let server: Server | undefined
  const probe = createServer()
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()))
  const port = (probe.address() as AddressInfo).port
  await new Promise((r) => probe.close(r))
  const rx: HookReceiver = {
    url: `https://127.0.0.1:${port}/statement-events`,
    caFile,
    accepted: [],
    badSignatures: 0,
    bodies: new Map(),
    failing: false,
    async up(s) {
      secret = s
      server = createServer({ cert: cert.certPem, key: cert.keyPem, minVersion: 'TLSv1.2' }, (req, res) => {
        const chunks: Buffer[] = []
        req.on('data', (d: Buffer) => chunks.push(d))
        req.on('end', () => {
          const body = Buffer.concat(chunks).toString()
          const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(String(req.headers['statement-gateway-signature'] ?? ''))
          const expected = m ? createHmac('sha256', secret).update(`${m[1]}.${body}`).digest() : undefined
          const fresh = m && Math.abs(Date.now() / 1000 - Number(m[1])) < 300
          if (!m || !expected || !fresh || !timingSafeEqual(expected, Buffer.from(m[2]!, 'hex'))) {
            rx.badSignatures++
            res.writeHead(401).end()
            return
          }
          const hook = JSON.parse(body) as Hook
          const before = rx.bodies.get(hook.id)
          if (before !== undefined && before !== body) rx.badSignatures += 1000 // a re-sent event changed: never expected
          rx.bodies.set(hook.id, body)
          if (rx.failing) {
            res.writeHead(503).end()
            return
          }
          rx.accepted.push(hook)
          res.writeHead(204).end()
        })
      })
      server.on('connection', (s: Socket) => {
        sockets.add(s)
        s.on('close', () => sockets.delete(s))
      })
      await new Promise<void>((r) => server!.listen(port, '127.0.0.1', () => r()))
    },
    async down() {
      if (!server) return
      const s = server
      server = undefined
      for (const c of sockets) c.destroy()
      await new Promise((r) => s.close(r))
    },
  }
  t.teardown(() => rx.down())
  return rx
}
