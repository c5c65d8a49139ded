import { execFile, execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { canonicalJson } from '../../firmware/config/versions.ts'
import { verifyCertificate, type SignedCertificate } from '../../firmware/control/reset.ts'
import { ensureDevToken, SOFTHSM_MODULE } from '../../hal/hsm/softhsm.ts'
import { tempDir } from '../helpers/box.ts'
import { spawnDaemon, submitter, writeDaemonConfig } from '../helpers/daemon.ts'
import { startReceiver, until } from '../helpers/receiver.ts'

const TOOL = new URL('../../provisioning/factory-reset.ts', import.meta.url).pathname

function tool(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [TOOL, ...args], { env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  )
}

t.test('S13, ETSI 5.11: factory reset empties the HSM token and the data, and leaves a certificate of deletion that verifies', async (t) => {
  // A "vendor" HSM: a token outside the data directory that stays, emptied, after the reset.
  const hsmDir = tempDir(t, 'sg-vendor-hsm-')
  const token = ensureDevToken(hsmDir, 'sg-reset')
  const pin = readFileSync(token.pinFile, 'utf8').trim()
  const env = { SOFTHSM2_CONF: token.env.SOFTHSM2_CONF }
  const rx = await startReceiver(t)
  const cfg = await writeDaemonConfig(t, {
    hsm: { module: SOFTHSM_MODULE, tokenLabel: 'sg-reset', pinFile: token.pinFile },
    delivery: { routes: [{ domain: '*', host: '127.0.0.1', port: rx.port }] },
  })
  const child = spawnDaemon(t, ['--config', cfg.path], { env })
  const up = (await child.waitFor((r) => r.msg === 'submission listening', 30_000)) as unknown as { starttls: { port: number } }
  const smtp = await submitter(t, cfg.dataDir, up.starttls.port)
  await smtp.sendMail({ from: 'statements@bank.example', to: 'c@example.net', subject: 'statement', text: 'statement' })
  await until(() => rx.received.length === 1)
  child.proc.kill('SIGTERM')
  await child.exited
  const objects = () =>
    execFileSync('pkcs11-tool', ['--module', SOFTHSM_MODULE, '--token-label', 'sg-reset', '--login', '--pin', pin, '--list-objects'], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
    })
  t.match(objects(), /audit\/checkpoint-signing/, 'the token holds the box’s keys')

  const out = tempDir(t, 'sg-reset-out-')
  const certificate = join(out, 'deletion.json')
  const refused = await tool(['--config', cfg.path, '--certificate', certificate, '--confirm', 'ERASE someone-else'], env)
  t.equal(refused.code, 1)
  t.match(refused.stderr, /not confirmed .* nothing was changed/)
  t.ok(existsSync(join(cfg.dataDir, 'spool')), 'nothing was changed')

  const exportDir = join(out, 'final-audit')
  const r = await tool(
    ['--config', cfg.path, '--certificate', certificate, '--export-audit', exportDir, '--reason', 'end of lease', '--confirm', `ERASE ${hostname()}`],
    env,
  )
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /Factory reset done\. \d+ HSM objects destroyed/)

  t.notMatch(objects(), /Object|label/, 'pkcs11-tool --list-objects shows no object')
  t.same(readdirSync(cfg.dataDir), [], 'no spool, ledger, configuration, administrators, TLS material or trail left')
  t.notOk(existsSync(cfg.path), 'the configuration file (password hashes) is gone')
  t.notOk(existsSync(token.pinFile), 'the PIN file is gone')

  const signed = JSON.parse(readFileSync(certificate, 'utf8')) as SignedCertificate
  t.ok(verifyCertificate(signed), 'the certificate verifies with the key it names')
  t.match(signed.certificate, {
    operator: /\S/,
    reason: 'end of lease',
    hsm: { token: 'sg-reset', remainingBesidesSigningKey: 0 },
    files: { spool: { files: Number }, audit: { files: Number } },
  })
  t.ok(signed.certificate.hsm.destroyed.some((d) => d.label === 'admin/password-pepper'))
  // Independently: openssl checks the signature with the trail's checkpoint key from the final export.
  writeFileSync(join(out, 'body'), canonicalJson(signed.certificate))
  writeFileSync(join(out, 'sig'), Buffer.from(signed.signature, 'base64'))
  t.equal(readFileSync(join(exportDir, 'checkpoint-key.pem'), 'utf8').trim(), signed.publicKey.trim(), 'the key the trail’s checkpoints are signed with')
  const ossl = execFileSync(
    'openssl',
    ['dgst', '-sha256', '-verify', join(exportDir, 'checkpoint-key.pem'), '-signature', join(out, 'sig'), join(out, 'body')],
    {
      encoding: 'utf8',
    },
  )
  t.match(ossl, /Verified OK/)
  t.ok(existsSync(join(exportDir, 'deletion-certificate.json')), 'the certificate is in the final export too')
  t.match(execFileSync('sh', [join(exportDir, 'verify.sh')], { encoding: 'utf8', cwd: exportDir }), /OK/, 'and the export verifies on its own')
})

t.test('S13: on a lab box the embedded token goes too, and the box is back to its first day', async (t) => {
  const cfg = await writeDaemonConfig(t)
  const child = spawnDaemon(t, ['--config', cfg.path])
  await child.waitFor((r) => r.msg === 'statement gateway started', 30_000)
  child.proc.kill('SIGTERM')
  await child.exited
  const certificate = join(tempDir(t, 'sg-reset-out-'), 'deletion.json')
  const r = await tool(['--config', cfg.path, '--certificate', certificate, '--confirm', `ERASE ${hostname()}`], {})
  t.equal(r.code, 0, r.stderr)
  t.same(readdirSync(cfg.dataDir), [], 'the token files too')
  const signed = JSON.parse(readFileSync(certificate, 'utf8')) as SignedCertificate
  t.ok(verifyCertificate(signed))
  t.match(signed.certificate.hsm.module, /embedded SoftHSM2/)
  t.notOk(verifyCertificate({ ...signed, certificate: { ...signed.certificate, operator: 'someone else' } }), 'a changed certificate does not verify')
})
