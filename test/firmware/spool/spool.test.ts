import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { TRANSITIONS } from '../../../firmware/spool/types.ts'
import { GatewayError } from '../../../firmware/errors.ts'
import { readHeader } from '../../../firmware/spool/record.ts'
import { encodeVersion1 } from '../../helpers/spool.ts'
import { epochKeyLabel } from '../../../firmware/keys/labels.ts'
import { tempDir, tinyDisk } from '../../helpers/box.ts'
import { devHsm } from '../../helpers/hsm.ts'
import { mail, spoolRig } from '../../helpers/spool.ts'

// Twelve cases with real tokens, tiny disks and crashes: 46–54 s in the suite, 121 s twice on 2026-12-06 beside a
// CPU hog on this 2-core machine, over the suite's 120 s per file.
t.setTimeout(300_000)

function recordFiles(dir: string): string[] {
  const spool = join(dir, 'spool')
  return readdirSync(spool, { withFileTypes: true })
    .filter((d) => d.isDirectory() && d.name !== 'quarantine')
    .flatMap((d) => readdirSync(join(spool, d.name)).map((f) => join(spool, d.name, f)))
}

/** A record's clear header, as the strings it holds. */
const fields = (file: string) => readHeader(readFileSync(file)).header as unknown as Record<string, string>

function grepCount(needle: string, ...dirs: string[]): number {
  let n = 0
  for (const d of dirs) {
    try {
      n += execFileSync('grep', ['-rlaF', needle, d], { encoding: 'utf8' }).split('\n').filter(Boolean).length
    } catch {
      // grep exits 1 when nothing matches
    }
  }
  return n
}

t.test('M10 canary: a unique string is nowhere on disk, in clear or base64, while queued or after; the record is ciphertext', async (t) => {
  const { hsm } = await devHsm(t)
  const dir = tempDir(t)
  const rig = await spoolRig(t, hsm, dir)
  const canary = `CANARY-${Math.random().toString(36).slice(2)}-有價證券`
  const rcpt = `canary-${Math.random().toString(36).slice(2)}@example.net`
  const m = mail(`balance for ${canary}`, rcpt)
  await rig.spool.accept(m)
  const forms = [canary, Buffer.from(canary).toString('base64').slice(0, 24), rcpt]
  for (const f of forms) t.equal(grepCount(f, dir, tmpdir()), 0, `"${f.slice(0, 20)}…" not found while queued`)
  const [file] = recordFiles(dir)
  const raw = readFileSync(file!)
  t.equal(raw.subarray(0, 4).toString(), 'SGSP')
  const { header } = readHeader(raw)
  t.same(Object.keys(header).sort(), ['created', 'epoch', 'epochKeyCt', 'epochKeyIv', 'id', 'nonce', 'salt', 'size'], 'the clear header holds no address')
  const got = await rig.spool.read(m.envelope.id)
  t.same(got.message, m.message, 'decrypts to the exact bytes')
  t.same(got.envelope.rcptTo, [rcpt])
  rig.spool.due(Number.MAX_SAFE_INTEGER, 10) // #34: a mail ends from in flight, as delivery claims it
  await rig.spool.finish(m.envelope.id, 'delivered', '250 ok')
  t.same(recordFiles(dir), [], 'the record is gone after the final state')
  for (const f of forms) t.equal(grepCount(f, dir, tmpdir()), 0, 'still not found after delivery')
})

t.test('the first submissions of a new epoch arrive together: one key is created, every one is accepted', async (t) => {
  const { hsm } = await devHsm(t)
  const clock = { now: 1_800_000_000_000 }
  const rig = await spoolRig(t, hsm, tempDir(t), { epochSeconds: 3600 }, clock)
  const results = await Promise.allSettled(Array.from({ length: 32 }, (_, i) => rig.spool.accept(mail(`burst ${i}`))))
  t.same(
    results.filter((r) => r.status === 'rejected'),
    [],
    'no submission refused (the key was once created twice and the loser tempfailed)',
  )
  t.equal(rig.events.filter((e) => e.type === 'spool.epoch_key_created').length, 1)
  t.equal(rig.spool.size, 32)
})

t.test('S13 epoch shredding: when an ended epoch has no live message, its HSM key is destroyed and old copies are undecryptable', async (t) => {
  const { hsm } = await devHsm(t)
  const dir = tempDir(t)
  const clock = { now: 1_800_000_000_000 }
  const rig = await spoolRig(t, hsm, dir, { epochSeconds: 3600 }, clock)
  const mails = [mail('one'), mail('two'), mail('three')]
  for (const m of mails) await rig.spool.accept(m)
  const epoch = rig.spool.entry(mails[0]!.envelope.id)!.epoch
  t.ok(rig.events.some((e) => e.type === 'spool.epoch_key_created' && e.epoch === epoch))
  const aside = join(tempDir(t), 'copy.rec')
  copyFileSync(recordFiles(dir)[0]!, aside)

  rig.spool.due(clock.now, 10) // #34: a mail ends from in flight, as delivery claims it
  await rig.spool.finish(mails[0]!.envelope.id, 'delivered', '250')
  await rig.spool.finish(mails[1]!.envelope.id, 'bounced', '550')
  t.ok(await hsm.keys.exists(epochKeyLabel(epoch), 'secret'), 'key stays while the epoch has live mail')
  clock.now += 3600_000 // the epoch ends
  await rig.spool.finish(mails[2]!.envelope.id, 'expired', 'too old')
  t.notOk(await hsm.keys.exists(epochKeyLabel(epoch), 'secret'), 'key destroyed (C_FindObjects finds nothing)')
  t.ok(rig.events.some((e) => e.type === 'spool.epoch_key_destroyed' && e.epoch === epoch))
  const { header } = readHeader(readFileSync(aside))
  if (!('epochKeyCt' in header)) throw new Error('a version 2 record was expected')
  const epochAad = Buffer.from(`statement-gateway spool epoch data key ${epoch}`)
  await t.rejects(
    hsm.keys.decrypt(epochKeyLabel(epoch), Buffer.from(header.epochKeyIv, 'base64'), Buffer.from(header.epochKeyCt, 'base64'), epochAad),
    { code: 'EHSM_KEY_NOT_FOUND' },
    "the copied record's epoch data key cannot be unwrapped by anyone, so neither can its own key be derived",
  )
})

t.test('#35: one epoch data key: wrapped once, every record its own key (own salt), one HSM unwrap per epoch after a restart', async (t) => {
  const { hsm } = await devHsm(t)
  const dir = tempDir(t)
  const clock = { now: 1_800_000_000_000 }
  let rig = await spoolRig(t, hsm, dir, { epochSeconds: 3600 }, clock)
  const mails = [mail('one'), mail('two'), mail('three')]
  for (const m of mails) await rig.spool.accept(m)
  t.same(rig.spool.keyUse, { wraps: 1, unwraps: 0 }, 'three mails, one HSM wrap; reading its own records back needs no unwrap')
  const headers = recordFiles(dir).map((f) => fields(f))
  t.equal(new Set(headers.map((h) => h.epochKeyCt)).size, 1, 'one sealed epoch data key in all three')
  t.equal(new Set(headers.map((h) => h.salt)).size, 3, 'three salts: each record has a key of its own')
  for (const m of mails) t.same((await rig.spool.read(m.envelope.id)).message, m.message)
  t.equal(rig.spool.keyUse.unwraps, 0)

  rig = await rig.restart()
  for (const m of mails) t.same((await rig.spool.read(m.envelope.id)).message, m.message, 'read back after a restart')
  t.same(rig.spool.keyUse, { wraps: 0, unwraps: 1 }, 'one unwrap for the epoch, not one per record')
  await rig.spool.accept(mail('four'))
  t.equal(rig.spool.keyUse.wraps, 1, 'this start wraps a data key of its own for new mail')

  // One record's salt moved into another's header: its key is not that record's key (and the header is authenticated).
  const [a, b] = recordFiles(dir)
  const rawA = readFileSync(a!)
  const saltB = fields(b!).salt!
  const saltA = fields(a!).salt!
  writeFileSync(a!, Buffer.from(rawA.toString('latin1').replace(saltA, saltB), 'latin1'))
  const idA = fields(a!).id!
  await t.rejects(rig.spool.read(idA), { code: 'ERECORD_INVALID' }, 'another salt gives another key: the record fails authentication')
})

t.test('#35: records of version 1 (a data key of their own, wrapped by the HSM) are still read', async (t) => {
  const { hsm } = await devHsm(t)
  const dir = tempDir(t)
  const clock = { now: 1_800_000_000_000 }
  let rig = await spoolRig(t, hsm, dir, { epochSeconds: 3600 }, clock)
  const m = mail('written by the firmware before #35')
  await rig.spool.accept(m)
  const [file] = recordFiles(dir)
  const { header } = readHeader(readFileSync(file!))
  const created = (header as { created: number }).created
  // The same mail as version 1 wrote it: a fresh data key wrapped by the epoch's HSM key (aad: the id).
  const dataKey = randomBytes(32)
  const wrapped = await hsm.keys.encrypt(epochKeyLabel(header.epoch), dataKey, Buffer.from(m.envelope.id))
  writeFileSync(file!, encodeVersion1(m, { id: m.envelope.id, epoch: header.epoch, created }, dataKey, wrapped))
  rig = await rig.restart()
  t.same((await rig.spool.read(m.envelope.id)).message, m.message, 'decrypted with its own unwrapped key')
  t.equal(rig.spool.keyUse.unwraps, 1)
})

t.test('an ended epoch whose messages all became final before a restart is shredded at start', async (t) => {
  const { hsm } = await devHsm(t)
  const dir = tempDir(t)
  const clock = { now: 1_800_000_000_000 }
  const rig = await spoolRig(t, hsm, dir, { epochSeconds: 60 }, clock)
  const m = mail('x')
  await rig.spool.accept(m)
  const epoch = rig.spool.entry(m.envelope.id)!.epoch
  rig.spool.due(clock.now, 10)
  await rig.spool.finish(m.envelope.id, 'delivered', '250') // same epoch: key kept
  t.ok(await hsm.keys.exists(epochKeyLabel(epoch), 'secret'))
  clock.now += 120_000
  await rig.restart()
  t.notOk(await hsm.keys.exists(epochKeyLabel(epoch), 'secret'))
})

t.test('states survive a restart; final mails are gone; in-flight comes back as queued (at-least-once)', async (t) => {
  const { hsm } = await devHsm(t)
  const dir = tempDir(t)
  const clock = { now: 1_800_000_000_000 }
  let rig = await spoolRig(t, hsm, dir, {}, clock)
  const [a, b, c, d] = [mail('a'), mail('b'), mail('c'), mail('d')]
  for (const m of [a, b, c, d]) await rig.spool.accept(m)
  t.equal(rig.spool.due(clock.now, 10).length, 4, 'all due, now in flight')
  await rig.spool.defer(a.envelope.id, clock.now + 600_000, '451 try later')
  await rig.spool.hold(b.envelope.id)
  await rig.spool.finish(c.envelope.id, 'delivered', '250')
  rig = await rig.restart()
  t.match(rig.spool.entry(a.envelope.id), { state: 'deferred', attempts: 1, nextAttemptAt: clock.now + 600_000 })
  t.match(rig.spool.entry(b.envelope.id), { state: 'held' })
  t.equal(rig.spool.entry(c.envelope.id), undefined)
  t.match(rig.spool.entry(d.envelope.id), { state: 'queued' }, 'in flight at the restart → queued again')
  t.same(
    rig.spool.due(clock.now, 10).map((e) => e.id),
    [d.envelope.id],
    'only d is due',
  )
  await rig.spool.release(b.envelope.id)
  t.equal(rig.spool.due(clock.now, 10)[0]!.id, b.envelope.id)
  t.same((await rig.spool.read(a.envelope.id)).message, a.message)
})

t.test('recipients already final survive a restart, a hold and a release; the journal names them by index only', async (t) => {
  const { hsm } = await devHsm(t)
  const dir = tempDir(t)
  const clock = { now: 1_800_000_000_000 }
  let rig = await spoolRig(t, hsm, dir, {}, clock)
  const m = mail('multi')
  await rig.spool.accept(m)
  rig.spool.due(clock.now, 1)
  await rig.spool.defer(m.envelope.id, clock.now + 60_000, '450 mailbox busy', { delivered: [0, 2], bounced: [1] })
  await rig.spool.hold(m.envelope.id)
  rig = await rig.restart()
  t.same(rig.spool.recipientsDone(m.envelope.id), { delivered: [0, 2], bounced: [1] }, 'after a hold and a restart')
  await rig.spool.release(m.envelope.id)
  rig = await rig.restart() // the journal was compacted at the previous start
  t.same(rig.spool.recipientsDone(m.envelope.id), { delivered: [0, 2], bounced: [1] }, 'after a release, compaction and a restart')
  const journal = readFileSync(join(dir, 'spool', 'journal'), 'latin1')
  t.match(journal, new RegExp(`${m.envelope.id} D 1 \\w+ 0,2;1 \\w+\n`))
  t.notMatch(journal, /@/, 'no address in the clear-text journal')
  rig.spool.due(clock.now, 10)
  await rig.spool.finish(m.envelope.id, 'delivered', '250')
  t.equal(rig.spool.recipientsDone(m.envelope.id), undefined)
})

t.test('a mail held while its attempt is in flight stays held when the attempt ends deferred, also after a restart', async (t) => {
  const { hsm } = await devHsm(t)
  const dir = tempDir(t)
  const clock = { now: 1_800_000_000_000 }
  let rig = await spoolRig(t, hsm, dir, {}, clock)
  const m = mail('held-in-flight')
  await rig.spool.accept(m)
  t.equal(rig.spool.due(clock.now, 1).length, 1, 'taken for an attempt')
  await rig.spool.hold(m.envelope.id)
  await rig.spool.defer(m.envelope.id, clock.now + 60_000, '451 try later')
  t.equal(rig.spool.entry(m.envelope.id)?.state, 'held', 'the hold wins over the deferral')
  t.same(rig.spool.due(clock.now + 120_000, 10), [], 'not delivered while held')
  rig = await rig.restart()
  t.equal(rig.spool.entry(m.envelope.id)?.state, 'held', 'after a restart too')
})

t.test('a corrupted record is quarantined with an event at start-up verification; the others are unaffected', async (t) => {
  const { hsm } = await devHsm(t)
  const dir = tempDir(t)
  const rig = await spoolRig(t, hsm, dir)
  const ms = [mail('1'), mail('2'), mail('3')]
  for (const m of ms) await rig.spool.accept(m)
  await rig.spool.stop()
  const victim = recordFiles(dir).find((f) => f.includes(ms[1]!.envelope.id))!
  const bytes = readFileSync(victim)
  bytes[bytes.length - 30]! ^= 0xff
  writeFileSync(victim, bytes)
  // A torn file from a crash before rename, too.
  writeFileSync(`${recordFiles(dir)[0]}.tmp`, 'SGSP partial')

  const again = await spoolRig(t, hsm, dir, { verifyOnStart: true })
  await new Promise((r) => setTimeout(r, 300))
  t.ok(
    again.events.some((e) => e.type === 'spool.quarantined' && e.file.includes(ms[1]!.envelope.id)),
    'quarantine event',
  )
  t.same(readdirSync(join(dir, 'spool', 'quarantine')).length, 1)
  t.equal(again.spool.entry(ms[1]!.envelope.id), undefined)
  for (const m of [ms[0]!, ms[2]!]) t.same((await again.spool.read(m.envelope.id)).message, m.message, 'others intact')
  t.notOk(
    recordFiles(dir).some((f) => f.endsWith('.tmp')),
    'torn temporary file removed',
  )
  t.ok(again.records.some((r) => r.msg === 'spool verification finished' && r.quarantined === 1))
})

t.test('limits: the disk reserve on a real tiny filesystem answers 452 4.3.1, leaves nothing partial; a full queue too', async (t) => {
  const { hsm } = await devHsm(t)
  const mnt = tinyDisk(t, '256k')
  const rig = await spoolRig(t, hsm, mnt, { reservePercent: 10 })
  const big = (n: number) => ({ ...mail('x'.repeat(20_000)), envelope: { ...mail('').envelope, id: `big${n}xxxxxxxx` } })
  let accepted = 0
  let refusal: GatewayError | undefined
  for (let i = 0; i < 40 && !refusal; i++) {
    try {
      await rig.spool.accept(big(i))
      accepted++
    } catch (err) {
      refusal = err as GatewayError
    }
  }
  t.ok(accepted > 3, `accepted ${accepted} before the reserve`)
  t.equal(refusal?.code, 'EQUEUE_DISK_FULL')
  t.equal(refusal?.responseCode, 452)
  t.match(refusal?.message, /^4\.3\.1 EQUEUE_DISK_FULL/)
  t.notOk(
    recordFiles(mnt).some((f) => f.endsWith('.tmp')),
    'no partial record left',
  )
  t.equal(rig.spool.size, accepted)
  for (let i = 0; i < accepted; i++) t.ok(rig.spool.entry(`big${i}xxxxxxxx`), `record ${i} intact`)

  const small = await spoolRig(t, hsm, tempDir(t), { maxMessages: 2 })
  await small.spool.accept(mail('1'))
  await small.spool.accept(mail('2'))
  await t.rejects(small.spool.accept(mail('3')), { code: 'EQUEUE_FULL', responseCode: 452 })
})

t.test('S11: alarms before the limits bite — the queue near maxMessages, free disk near the reserve — at most hourly', async (t) => {
  const { hsm } = await devHsm(t)
  const mnt = tinyDisk(t, '1m')
  const clock = { now: 1_800_000_000_000 }
  const rig = await spoolRig(t, hsm, mnt, { maxMessages: 10, alarmPercent: 50, reservePercent: 20 }, clock)
  const alarms = () => rig.events.filter((e) => e.type === 'spool.alarm')
  rig.spool.checkAlarms()
  t.same(alarms(), [], 'quiet while far from the limits')
  for (let i = 0; i < 5; i++) await rig.spool.accept(mail(`m${i}`))
  rig.spool.checkAlarms()
  t.match(alarms(), [{ kind: 'queue', value: 5, limit: 10 }])
  t.ok(rig.records.some((r) => r.msg === 'spool is filling up: submissions will be refused at spool.maxMessages'))
  rig.spool.checkAlarms()
  t.equal(alarms().length, 1, 'not again within the hour')
  clock.now += 3_600_001
  rig.spool.checkAlarms()
  t.equal(alarms().filter((a) => a.kind === 'queue').length, 2, 'again an hour later while it lasts')

  // Fill the disk to within twice the reserve (20 %): 70 % used.
  writeFileSync(join(mnt, 'filler'), Buffer.alloc(700 * 1024))
  rig.spool.checkAlarms()
  t.match(
    alarms().find((a) => a.kind === 'disk'),
    { kind: 'disk', limit: 20 },
  )
  t.ok((alarms().find((a) => a.kind === 'disk') as { value: number }).value < 40)
})

t.test('#15 finding 10: a disk that fills faster than the minute check still gets its alarm before the first 452', async (t) => {
  const { hsm } = await devHsm(t)
  const mnt = tinyDisk(t, '1m')
  const clock = { now: 1_800_000_000_000 }
  const rig = await spoolRig(t, hsm, mnt, { reservePercent: 20 }, clock)
  await rig.spool.accept(mail('while there is room'))
  // From plenty of room to below the reserve in one go.
  writeFileSync(join(mnt, 'filler'), Buffer.alloc(900 * 1024))
  clock.now += 1001
  const refused = await rig.spool.accept(mail('too late')).then(
    () => undefined,
    (e: { code: string }) => e.code,
  )
  t.equal(refused, 'EQUEUE_DISK_FULL')
  t.match(
    rig.events.filter((e) => e.type === 'spool.alarm'),
    [{ kind: 'disk', limit: 20 }],
    'the alarm was raised, before the refusal was answered',
  )
})

t.test('#34: a move the spool does not declare throws ESPOOL_TRANSITION, and nothing is journalled for it', async (t) => {
  const { hsm } = await devHsm(t)
  const dir = tempDir(t)
  const clock = { now: 1_800_000_000_000 }
  const rig = await spoolRig(t, hsm, dir, {}, clock)
  const m = mail('moves')
  await rig.spool.accept(m)
  const journal = () => readFileSync(join(dir, 'spool', 'journal'), 'latin1')
  const before = journal()
  await t.rejects(rig.spool.finish(m.envelope.id, 'delivered', '250'), { code: 'ESPOOL_TRANSITION', message: /queued → final is not a declared transition/ })
  await t.rejects(rig.spool.awaitReceipt(m.envelope.id, clock.now + 60_000, { sends: 1, firstSentAt: clock.now }, clock.now + 86_400_000), {
    code: 'ESPOOL_TRANSITION',
  })
  t.equal(journal(), before, 'the refused moves left no line')
  t.match(rig.spool.entry(m.envelope.id), { state: 'queued' })
  rig.spool.due(clock.now, 1)
  await rig.spool.finish(m.envelope.id, 'delivered', '250')
  t.equal(rig.spool.entry(m.envelope.id), undefined, 'from in flight, it ends')
  for (const [from, tos] of Object.entries(TRANSITIONS)) for (const to of tos) t.ok(to === 'final' || to in TRANSITIONS, `${from} → ${to} names a state`)
})
