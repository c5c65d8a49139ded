import { renameSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ACCOUNT, startSubmission } from '../helpers/box.ts'
import { RawSmtp } from '../helpers/smtp.ts'
import { mailauthDkimVerify, opensslVerify, pythonDkimVerify, signingSetup } from '../helpers/signing.ts'
import { FIXTURES } from '../fixtures/messages.ts'

async function submit(port: number, tls: object, data: Buffer) {
  const c = await RawSmtp.open(port)
  await c.handshake(tls)
  await c.authPlain(ACCOUNT.name, ACCOUNT.password)
  await c.cmd('MAIL FROM:<statements@bank.example>')
  await c.cmd('RCPT TO:<customer@example.net>')
  await c.cmd('DATA')
  c.write(Buffer.concat([data, Buffer.from('.\r\n')]))
  const r = await c.reply()
  c.close()
  return r
}

t.test('submission → signing → handoff: what the box keeps is S/MIME- and DKIM-signed, and both verify', async (t) => {
  const s = await signingSetup(t)
  const box = await startSubmission(t, {}, { stages: [s.stage] })
  const r = await submit(box.starttlsPort, box.tls, FIXTURES['base64 PDF attachment (as statement systems send it)']!)
  t.equal(r.code, 250, r.text)
  const kept = box.handoff.mails[0]!.message
  t.ok((await opensslVerify(s.dir, s.ca.cert, kept)).ok, 'S/MIME verifies')
  const record = await s.dkimRecord()
  t.equal(await pythonDkimVerify(kept, record), true, 'DKIM verifies (python3-dkim)')
  t.same(await mailauthDkimVerify(kept, record), ['pass'], 'DKIM verifies (mailauth)')
})

t.test('signing refusals reach the client as SMTP replies: 550 5.7.1 for a bad certificate, 451 4.3.0 with the HSM away', async (t) => {
  const s = await signingSetup(t, { days: 1 })
  const box = await startSubmission(t, {}, { stages: [s.stage] })
  s.now.value += 2 * 86_400_000
  const expired = await submit(box.starttlsPort, box.tls, FIXTURES['plain text']!)
  t.equal(expired.code, 550)
  t.match(expired.text, /^5\.7\.1 ESIGN_CERT_EXPIRED/)
  s.now.value -= 2 * 86_400_000

  renameSync(join(s.hsmDir, 'tokens'), join(s.hsmDir, 'tokens.away'))
  s.now.value += 61_000
  const away = await submit(box.starttlsPort, box.tls, FIXTURES['plain text']!)
  t.equal(away.code, 451)
  t.match(away.text, /^4\.3\.0 EHSM_UNAVAILABLE/)
  t.equal(box.handoff.mails.length, 0, 'nothing was accepted unsigned')
  renameSync(join(s.hsmDir, 'tokens.away'), join(s.hsmDir, 'tokens'))
})
