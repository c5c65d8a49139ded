import t from 'tap'
import { ClientErrorLog, faultOf } from '../../firmware/client-errors.ts'
import { logSink } from '../helpers/logs.ts'

/** #29 finding 4: one client-error logger for every listener: counted, one line a minute per address and kind, no stack. */

t.test('faults are named by kind', async (t) => {
  t.equal(faultOf(Object.assign(new Error('tls_process_client_hello:length mismatch'), { code: 'ERR_SSL_LENGTH_MISMATCH' })), 'tls')
  t.equal(faultOf(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })), 'reset')
  t.equal(faultOf(Object.assign(new Error('Request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' })), 'timeout')
  t.equal(faultOf(Object.assign(new Error('Parse Error: Invalid method encountered'), { code: 'HPE_INVALID_METHOD' })), 'other')
})

t.test('one line a minute per address and kind, every fault counted once', async (t) => {
  let now = 0
  const { log, records } = logSink()
  const clients = new ClientErrorLog(log, { now: () => now })
  const err = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })
  for (let i = 0; i < 100; i++) clients.error(Object.assign(new Error('x'), { code: 'ECONNRESET' }), '192.0.2.1')
  clients.error(err, '192.0.2.1')
  clients.error(err, '192.0.2.1') // the same error through a second event
  clients.error(Object.assign(new Error('y'), { code: 'ECONNRESET' }), '192.0.2.2')
  t.equal(clients.counts.reset, 102, 'every fault counted, the same error object once')
  t.equal(records.length, 2, 'one line per address')
  now += 60_000
  clients.note('192.0.2.1', 'reset', 'again')
  t.equal(records.length, 3, 'a minute later, a line again')
  t.ok(
    records.every((r) => r.level === 30 && !('err' in r) && !('stack' in r)),
    'at info level, without an error object or a stack',
  )
  t.match(records[0], { ip: '192.0.2.1', kind: 'reset', counted: 1 })
})
