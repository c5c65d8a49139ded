import t from 'tap'
import { parseConfig } from '../../../firmware/config/load.ts'
import { EgressPool, isBlockReply, isThrottleReply } from '../../../firmware/delivery/egress.ts'
import { devHsm } from '../../helpers/hsm.ts'
import { deliveryRig, finals, route } from '../../helpers/delivery.ts'
import { smtpError, startReceiver, until } from '../../helpers/receiver.ts'

t.test('replies that block a source address, as large receivers word them', async (t) => {
  t.ok(isBlockReply('5.7.1 Service unavailable; client host [192.0.2.1] blocked using zen.spamhaus.org'))
  t.ok(isBlockReply('5.7.1 [192.0.2.1] Our system has detected that this message is likely unsolicited mail. To reduce spam, this IP has poor reputation'))
  t.notOk(isBlockReply('5.1.1 The email account that you tried to reach does not exist'))
})

t.test('replies that ask a source address to slow down, and those that do not', async (t) => {
  t.ok(isThrottleReply({ code: 421, text: '4.7.0 Try again later, closing connection.' }), '421 is the server saying it is busy')
  t.ok(isThrottleReply({ code: 421, text: '4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address.' }))
  t.ok(isThrottleReply({ code: 451, text: '4.7.0 Temporarily rate limited due to IP reputation' }))
  t.ok(isThrottleReply({ code: 452, text: '4.3.2 Too many connections from your host' }))
  t.notOk(isThrottleReply({ code: 451, text: '4.7.1 Greylisted, please try again later' }), 'greylisting concerns one mail')
  t.notOk(isThrottleReply({ code: 450, text: '4.2.1 Mailbox busy' }))
  t.notOk(isThrottleReply({ code: 550, text: '5.7.1 rate limit exceeded' }), 'a 5xx is never a pause')
})

t.test('a pause ends when it is over; a shorter one does not cut a longer one short', async (t) => {
  const clock = { now: 0 }
  const pool = new EgressPool(parseConfig({ delivery: { blockPauseSeconds: 600 } }), { now: () => clock.now })
  pool.pause('127.0.0.11', 'mx:25') // block: 600 s
  pool.pause('127.0.0.11', 'mx:25', 120_000) // a throttle after it
  clock.now = 300_000
  t.same(pool.pausedFor('mx:25'), ['127.0.0.11'], 'the block still holds')
  t.not(pool.pick('mx:25')?.address, '127.0.0.11')
  clock.now = 600_001
  t.same(pool.pausedFor('mx:25'), [])
  pool.pause('127.0.0.12', 'mx:25', 120_000)
  clock.now += 120_001
  t.same(pool.pausedFor('mx:25'), [], 'a throttle pause is short')
})

t.test('one source address blocked by the destination: paused there, the others carry the load', async (t) => {
  const { hsm } = await devHsm(t)
  const rx = await startReceiver(t, {
    onConnect: (s) =>
      s.remoteAddress.endsWith('127.0.0.12') ? smtpError(554, '5.7.1 Service unavailable; client host [127.0.0.12] blocked using zen.spamhaus.org') : undefined,
  })
  const rig = await deliveryRig(t, hsm, { ...route(rx.port), messagesPerConnection: 1 })
  for (let i = 0; i < 12; i++) await rig.enqueue(`c${i}@example.net`)
  await until(() => rx.received.length === 12)
  t.notOk(
    rx.received.some((r) => r.remoteAddress === '127.0.0.12'),
    'nothing delivered from the blocked address',
  )
  t.same(rig.engine.egress.pausedFor(`127.0.0.1:${rx.port}`), ['127.0.0.12'])
  t.equal(Object.values(finals(rig.events)).filter((o) => o === 'bounced').length, 0, 'a block is not a bounce')
})

t.test('a destination that asks one source address to slow down: it rests there briefly, the mail goes out from another at once', async (t) => {
  const { hsm } = await devHsm(t)
  const rx = await startReceiver(t, {
    onConnect: (s) =>
      s.remoteAddress.endsWith('127.0.0.13')
        ? smtpError(421, '4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address')
        : undefined,
  })
  const rig = await deliveryRig(t, hsm, { ...route(rx.port), messagesPerConnection: 1, throttlePauseSeconds: 120 })
  for (let i = 0; i < 8; i++) await rig.enqueue(`c${i}@example.net`)
  await until(() => rx.received.length === 8)
  t.notOk(rx.received.some((r) => r.remoteAddress === '127.0.0.13'))
  t.equal(rig.events.filter((e) => e.type === 'spool.deferred').length, 0, 'no mail waited for a retry: the next address took it')
  t.same(rig.engine.egress.pausedFor(`127.0.0.1:${rx.port}`), ['127.0.0.13'])
  rig.clock.now += 121_000
  t.same(rig.engine.egress.pausedFor(`127.0.0.1:${rx.port}`), [], 'back in use after the throttle pause')
})
