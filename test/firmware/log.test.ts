import t from 'tap'
import { maskAddress } from '../../firmware/log.ts'
import { logSink } from '../helpers/logs.ts'

t.test('secrets, PINs and AUTH data are redacted from log records', async (t) => {
  const { log, records, text } = logSink()
  log.info({ password: 'pw-1', auth: { password: 'pw-2', user: 'u' }, pin: '1234', hsm: { pin: '5678' }, account: { passwordHash: '$scrypt$x' } }, 'x')
  t.match(records[0], { password: '[redacted]', auth: { password: '[redacted]', user: 'u' }, pin: '[redacted]', hsm: { pin: '[redacted]' } })
  t.notMatch(text(), /pw-1|pw-2|1234|5678|\$scrypt/)
})

t.test('addresses are masked for operational logs', async (t) => {
  t.equal(maskAddress('customer@example.net'), 'c****r@example.net')
  t.equal(maskAddress('ab@example.net'), '**@example.net')
  t.equal(maskAddress('nobody'), 'n****y')
  t.equal(maskAddress(''), '')
})
