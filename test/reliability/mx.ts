import type { AddressInfo, Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { SMTPServer } from 'smtp-server'
import { makeSelfSignedServerCert } from '../../hal/crypto/selfsigned.ts'
import { LISTENER_TYPES } from '../../firmware/config/sections/fields.ts'
import { kindOf, shapeOf, typeNameOf, type Field } from '../../firmware/config/types.ts'
import { schema } from '../../firmware/config/schema.ts'
import type { Box } from './box.ts'
import type { Delivery } from './judge.ts'

type Row = { scenario: string; measured: string; ok: boolean }
const rows: Row[] = []

/** Records one line of the suite's table (and says it at once on stderr). */
export function row(scenario: string, measured: string, ok: boolean): void {
  rows.push({ scenario, measured, ok })
  process.stderr.write(`${ok ? 'ok  ' : 'FAIL'} ${scenario}: ${measured}\n`)
}

/** Adds `text` to the measurements of the rows from index `from` on (a scenario's load figures). */
export function annotate(from: number, text: string): void {
  for (const r of rows.slice(from)) r.measured += `; ${text}`
}

/** The table so far. */
export function results(): readonly Row[] {
  return rows
}

/** A receiving MX that records each statement id it got and whether both signatures were on it. */
export async function receiver(
  opts: {
    onData?: (id: string, n: number) => 'accept' | 'tempfail' | 'stall' | 'drop'
    onRcpt?: (rcpt: string) => number
    onDelivered?: (d: Delivery) => void
  } = {},
) {
  const got = new Map<string, number>()
  /** Every 250 the receiver gave after DATA: the statement, the box's queue id (its Received line) and the receiver's clock. */
  const deliveries: Delivery[] = []
  /** The envelope sender each statement came with (its VERP address, when it has one). */
  const senders = new Map<string, string>()
  let unsigned = 0
  let n = 0
  const { certPem, keyPem } = makeSelfSignedServerCert({ hostname: 'mx.test' })
  const server = new SMTPServer({
    key: keyPem,
    cert: certPem,
    disabledCommands: ['AUTH'],
    disableReverseLookup: true,
    logger: false,
    size: 50 * 1024 * 1024,
    onRcptTo(address, _s, cb) {
      const code = opts.onRcpt?.(address.address) ?? 250
      cb(code === 250 ? null : Object.assign(new Error('5.1.1 no such user'), { responseCode: code }))
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = []
      const i = ++n
      let dropped = false
      stream.on('data', (c: Buffer) => {
        if (!dropped && chunks.length === 0 && opts.onData && opts.onData('', i) === 'drop') {
          dropped = true
          for (const conn of server.connections) if (conn.session.id === session.id) (conn as unknown as { _socket: Socket })._socket.destroy()
          return
        }
        chunks.push(c)
      })
      stream.on('end', () => {
        if (dropped) return
        const data = Buffer.concat(chunks).toString('latin1')
        const id = /^X-Statement-ID: (\S+)/m.exec(data)?.[1] ?? '?'
        const verdict = opts.onData?.(id, i) ?? 'accept'
        if (verdict === 'stall') return
        if (verdict === 'tempfail') return cb(Object.assign(new Error('4.3.0 try later'), { responseCode: 451 }))
        if (!data.startsWith('DKIM-Signature:') || !/Content-Type: multipart\/signed/i.test(data)) unsigned++
        got.set(id, (got.get(id) ?? 0) + 1)
        senders.set(id, session.envelope.mailFrom ? session.envelope.mailFrom.address : '')
        const delivery = { statement: id, queueId: /\(Statement Gateway\) with \S+ id (\S+);/.exec(data)?.[1], at: Date.now() }
        deliveries.push(delivery)
        opts.onDelivered?.(delivery)
        cb(null, 'OK')
      })
    },
  })
  server.on('error', () => {})
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  return {
    server,
    port: (server.server.address() as AddressInfo).port,
    got,
    deliveries,
    senders,
    unsigned: () => unsigned,
    close: () => new Promise<void>((r) => server.close(() => r())),
  }
}

/**
 * Puts every listener of the box on a free port (#33: two suites, or a suite beside
 * `npm start`, never collide): every key the schema marks as a listener's port or
 * address, found by its type, so a listener added later cannot be missed.
 * Returns the keys it set.
 */
export function listenersOnPortZero(raw: Record<string, unknown>): string[] {
  const set: string[] = []
  const walk = (shape: Record<string, Field<unknown>>, into: Record<string, unknown>, prefix: string) => {
    for (const [k, f] of Object.entries(shape)) {
      const key = prefix ? `${prefix}.${k}` : k
      if (kindOf(f) === 'object') {
        const sub = (into[k] ??= {}) as Record<string, unknown>
        walk(shapeOf(f)!, sub, key)
      } else if (typeNameOf(f) === LISTENER_TYPES[0]) {
        into[k] = 0
        set.push(key)
      } else if (typeNameOf(f) === LISTENER_TYPES[1]) {
        const v = String(into[k] ?? f.default)
        into[k] = `${v.slice(0, v.lastIndexOf(':'))}:0`
        set.push(key)
      }
    }
  }
  walk(shapeOf(schema)!, raw, '')
  return set
}

/**
 * Box config: the shipped defaults, every listener on a free port, everything delivered to the
 * loopback MX on `port` (#33). Anything else a scenario needs is passed in `extra` (delivery
 * settings) or set by the scenario itself, and `overrides` names it for the scenario's row.
 */
export function routeTo(port: number, extra: Record<string, unknown> = {}) {
  return (c: Record<string, unknown>) => {
    listenersOnPortZero(c)
    c.delivery = { routes: [{ domain: '*', host: '127.0.0.1', port, tls: 'opportunistic' }], ...extra }
  }
}

/** What a row changed from the shipped defaults beyond the loopback route and free ports, as its row prints it. */
export function overrides(changes: Record<string, unknown>): string {
  const flat: string[] = []
  const walk = (o: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(o))
      if (v && typeof v === 'object' && !Array.isArray(v)) walk(v as Record<string, unknown>, `${prefix}${k}.`)
      else flat.push(`${prefix}${k}=${JSON.stringify(v)}`)
  }
  walk(changes, '')
  return flat.length ? `settings changed: ${flat.join(', ')}` : 'shipped defaults'
}

/** Waits until the box's queue is empty (true) or `ms` have passed (false). */
export async function drain(box: Box, ms = 120_000): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if ((await box.queueTotal()) === 0) return true
    await sleep(250)
  }
  return false
}
