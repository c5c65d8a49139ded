import { chmodSync } from 'node:fs'
import t from 'tap'
import { parseConfig } from '../../../firmware/config/load.ts'
import { openPostgres } from '../../../firmware/ledger/postgres.ts'
import { exportRows, ROW_FIELDS, statementHistory, summary } from '../../../firmware/ledger/queries.ts'
import { startPostgres } from '../../helpers/postgres.ts'
import { logSink } from '../../helpers/logs.ts'
import { until } from '../../helpers/receiver.ts'
import { hookReceiver } from '../../helpers/webhooks.ts'
import { WebhookSender, webhookSecret } from '../../../firmware/ledger/webhooks.ts'
import { attempt, ledgerRig, submitted } from '../../helpers/reports.ts'

t.test('two boxes share one PostgreSQL ledger: each writes its own rows, the report counts both', async (t) => {
  const pg = await startPostgres(t)
  const postgres = { url: pg.url, passwordFile: pg.passwordFile }
  const one = await ledgerRig(t, { boxId: 'box-taipei', postgres })
  const two = await ledgerRig(t, { boxId: 'box-taichung', postgres }, {}, one.hsm)
  t.equal(one.ledger.store.dialect, 'postgres')
  one.clock.value = two.clock.value = Date.parse('2026-11-05T02:00:00Z')
  await one.emit(...submitted('Q1', ['a@example.net'], { statementId: 'S-1', batch: 'NOV' }), attempt('Q1', 'delivered', ['a@example.net'], '250 ok'))
  await two.emit(...submitted('Q1', ['b@example.net'], { statementId: 'S-2', batch: 'NOV' }), attempt('Q1', 'bounced', ['b@example.net'], '550 5.1.1 unknown'))
  const [row] = await summary(one.ledger.store, { batch: 'NOV' }, ['batch'])
  t.match(
    row,
    { submitted: 2, delivered: 1, bouncedHard: 1, paperOwed: 1, bouncesByReason: { 'invalid-recipient': 1 } },
    'the same queue id on two boxes is two statements',
  )
  t.match(await statementHistory(two.ledger.store, 'S-1'), [{ box: 'box-taipei', state: 'delivered' }])
  const rows: unknown[][] = []
  for await (const batch of exportRows(one.ledger.store, { batch: 'NOV' })) rows.push(...batch)
  t.same(rows.map((r) => r[ROW_FIELDS.indexOf('box')]).sort(), ['box-taichung', 'box-taipei'], 'the export reads both, through a server-side cursor')
  await one.restartLedger()
  t.match((await summary(one.ledger.store, {}, []))[0], { submitted: 2 }, 'a restart counts nothing twice')
})

t.test("the password file must be the box's alone; a wrong password stops start-up with the server's reason", async (t) => {
  const pg = await startPostgres(t)
  chmodSync(pg.passwordFile, 0o644)
  await t.rejects(openPostgres({ url: pg.url, passwordFile: pg.passwordFile }), /readable by others \(mode 644\); make it 0600/)
  chmodSync(pg.passwordFile, 0o600)
  const config = parseConfig({ reports: { postgres: { url: pg.url.replace('gateway@', 'gateway:wrong@'), passwordFile: '' } } })
  await t.rejects(openPostgres(config.reports.postgres), /password authentication failed/)
})

t.test('webhooks from a PostgreSQL outbox: the same sender, in order per statement, each box only its own', async (t) => {
  const pg = await startPostgres(t)
  const postgres = { url: pg.url, passwordFile: pg.passwordFile }
  const hooks = await hookReceiver(t)
  const webhooks = { endpoints: [{ url: hooks.url, caFile: hooks.caFile }], retrySeconds: [1] }
  const one = await ledgerRig(t, { boxId: 'box-taipei', postgres, webhooks })
  const two = await ledgerRig(t, { boxId: 'box-taichung', postgres, webhooks }, {}, one.hsm)
  await hooks.up(await webhookSecret(one.hsm, hooks.url))
  const sender = new WebhookSender({ config: one.config, log: logSink().log, hsm: one.hsm, ledger: one.ledger, events: one.trail, clock: one.clock })
  await sender.start()
  t.teardown(() => sender.stop())
  one.clock.value = two.clock.value = Date.now()
  await one.emit(...submitted('Q1', ['a@example.net'], { statementId: 'S-1' }), attempt('Q1', 'bounced', ['a@example.net'], '550 5.1.1 unknown'))
  await two.emit(...submitted('Q2', ['b@example.net'], { statementId: 'S-2' }), attempt('Q2', 'delivered', ['b@example.net'], '250 ok'))
  await until(() => hooks.accepted.length >= 3)
  await new Promise((r) => setTimeout(r, 300))
  t.same(
    hooks.accepted.map((h) => `${h.statementId}:${h.type}`),
    ['S-1:accepted', 'S-1:bounced', 'S-1:paper_owed'],
    "box-taipei's sender sends box-taipei's events, in order; box-taichung's wait for its own sender",
  )
  t.equal(hooks.badSignatures, 0)
  t.equal(await sender.pending(), 0, 'its outbox is empty')
  const theirs = await two.ledger.store.get<{ n: number }>("SELECT COUNT(*) AS n FROM outbox WHERE box = 'box-taichung'")
  t.equal(Number(theirs?.n), 2, "the other box's events stay for it")
})
