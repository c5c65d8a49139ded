/**
 * A spool and delivery engine in a process of their own, for kill -9 tests of
 * the read-receipt rule (M11): the box's real components on a SoftHSM token
 * in `--hsm`, a data directory in `--data`, delivering to a loopback receiver
 * on `--port`. Only time is faked: the clock is the number in `--clock` (a file
 * the test rewrites). Every event is printed as a JSON line on stdout.
 *
 *   node receipts-child.ts --data DIR --hsm DIR --clock FILE --port N [--enqueue CLASS]
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { ReturnPathTokens } from '../../firmware/return-path/verp.ts'
import { parseConfig } from '../../firmware/config/load.ts'
import { AuditCopyHandoff } from '../../firmware/delivery/audit-copy.ts'
import { DeliveryEngine } from '../../firmware/delivery/engine.ts'
import type { BoxEvent } from '../../firmware/events.ts'
import { BOX_KEYS } from '../../firmware/keys/manifest.ts'
import { newQueueId } from '../../firmware/spool/ids.ts'
import { Spool } from '../../firmware/spool/spool.ts'
import { Hsm } from '../../hal/hsm/index.ts'

const { values } = parseArgs({
  options: { data: { type: 'string' }, hsm: { type: 'string' }, clock: { type: 'string' }, port: { type: 'string' }, enqueue: { type: 'string' } },
})
let cached = { at: 0, value: 0 }
/** The test's clock, read from its file at most every 20 ms. */
const clock = {
  now: () => {
    const real = Date.now()
    if (real - cached.at > 20) cached = { at: real, value: Number(readFileSync(values.clock!, 'utf8')) }
    return cached.value
  },
}
const config = parseConfig({
  dataDir: values.data,
  spool: { verifyOnStart: false },
  delivery: { routes: [{ domain: 'example.net', host: '127.0.0.1', port: Number(values.port) }], retrySeconds: [60] },
  returnPath: {
    domains: [{ from: 'bank.example', returnPath: 'bounce.bank.example' }],
    readReceipts: [{ statementClass: 'monthly-high-value' }],
    enabled: false,
  },
})
const hsm = new Hsm({
  module: '',
  tokenLabel: 'sg-test',
  pinFile: '',
  sessions: 2,
  reconnectIntervalMs: 1000,
  devDir: values.hsm!,
  clock: { now: () => Date.now() },
})
await hsm.open()
await hsm.ensureKeys(BOX_KEYS)
const log = pino({ level: 'silent' })
const events = { emit: (e: BoxEvent) => void process.stdout.write(`${JSON.stringify(e)}\n`) }
const spool = new Spool({ config, log, hsm, events, clock })
await spool.start()
const engine = new DeliveryEngine({ config, log, spool, events, clock, returnPath: new ReturnPathTokens(hsm) })
await engine.start()
if (values.enqueue) {
  const id = newQueueId()
  await new AuditCopyHandoff(spool, config).accept({
    envelope: {
      id,
      mailFrom: 'statements@bank.example',
      rcptTo: ['wang@example.net'],
      account: 'firm',
      clientAddress: '127.0.0.1',
      tls: undefined,
      receivedAt: clock.now(),
      statementClass: values.enqueue,
      tagged: true,
    },
    message: Buffer.from(
      `From: statements@bank.example\r\nTo: wang@example.net\r\nSubject: statement\r\nMessage-ID: <${id}@bank.example>\r\n\r\nStatement\r\n`,
    ),
  })
}
process.stdout.write(`${JSON.stringify({ type: 'child.ready' })}\n`)
