import { X509Certificate } from 'node:crypto'
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { systemClock } from '../../hal/clock.ts'
import { Hsm } from '../../hal/hsm/index.ts'
import { loadConfigFile } from '../../firmware/config/load.ts'
import { DEV_CA_NAME, devCaFile, ensureDevSmime } from '../../firmware/keys/dev-smime.ts'
import { DEV_SMIME_LABEL } from '../../firmware/keys/labels.ts'
import { hsmFromConfig } from '../../firmware/keys/service.ts'
import { SigningStage } from '../../firmware/pipeline/stages/signing.ts'
import { tempDir } from '../helpers/box.ts'
import { run } from '../helpers/hsm.ts'
import { logSink } from '../helpers/logs.ts'
import { opensslVerify, pythonDkimVerify } from '../helpers/signing.ts'

const tool = (name: string) => fileURLToPath(new URL(`../../provisioning/${name}.ts`, import.meta.url))
const node = (cwd: string, script: string, ...args: string[]) =>
  run(process.execPath, [tool(script), ...args], { cwd, env: { ...process.env, SG_CONFIG: '' } }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  )

t.test("#13 M4 M5 S8: a newcomer's first boot gives the box both signatures, and the tools read its config", async (t) => {
  const cwd = tempDir(t)
  const first = await node(cwd, 'first-boot', '--data-dir', './var')
  t.equal(first.code, 0, first.stderr)
  t.match(first.stderr, /made the S\/MIME key "smime\/dev" in the HSM/)
  const config = loadConfigFile(join(cwd, 'var', 'config.json'))
  t.equal(config.dataDir, join(cwd, 'var'), 'the data directory is absolute: the tools read the same data from anywhere')
  t.equal(config.signing.domains[0]?.smimeKey, DEV_SMIME_LABEL, 'the config names the key made in the HSM')
  t.equal(statSync(join(cwd, 'var', 'secrets', 'submission-statements.password')).mode & 0o777, 0o600, "S8: the generated password is for the box's user only")

  const again = await node(cwd, 'first-boot', '--data-dir', './var')
  t.match(again.stderr, /exists, leaving it as it is/, 'idempotent')

  // The tools use the development box's config when run where npm start was run (#15 item 12).
  const dns = await node(cwd, 'dkim', 'dns')
  t.equal(dns.code, 0, dns.stderr)
  t.match(dns.stdout, /^dev\._domainkey\.bank\.example\. IN TXT \( "v=DKIM1; k=rsa; p=/)
  t.match(dns.stdout, /^bounce\.bank\.example\. IN MX 10 localhost\.$/m, 'M8: the return-path MX')
  t.match(dns.stdout, /^bounce\.bank\.example\. IN TXT "v=spf1 ip4:127\.0\.0\.11 ip4:127\.0\.0\.12 .*-all"$/m, 'and its SPF record, the egress addresses')
  const help = await node(cwd, 'dkim', '--help')
  t.equal(
    help.stdout.split('\n')[0],
    `config: ${join(cwd, 'var', 'config.json')} (the development box's, made by npm start; --config FILE or $SG_CONFIG choose another)`,
  )
  const status = await node(cwd, 'hsm', 'status')
  t.match(
    JSON.parse(status.stdout),
    { certificates: [{ label: DEV_SMIME_LABEL, subject: /statements@bank\.example/ }] },
    'hsm status lists the certificate the config signs with',
  )

  const hsm = hsmFromConfig(config, systemClock)
  await hsm.open()
  t.teardown(() => hsm.close())
  const key = (await hsm.keys.list()).find((k) => k.label === DEV_SMIME_LABEL && k.kind === 'private')
  t.match(key, { sensitive: true, extractable: false }, 'M6: the S/MIME key was made in the HSM and cannot leave it')
  const [leaf, ca] = await hsm.certs.chain(DEV_SMIME_LABEL)
  const caFile = devCaFile(config.dataDir)
  t.equal(ca!.toString(), readFileSync(caFile, 'utf8'), 'the chain ends in the CA whose certificate verifiers get')
  t.match(ca!.subject, DEV_CA_NAME, 'the CA says it is not for production')
  t.ok(leaf!.checkIssued(ca!) && leaf!.verify(ca!.publicKey))
  t.equal(leaf!.subjectAltName, 'email:statements@bank.example')
  t.same(leaf!.keyUsage, ['1.3.6.1.5.5.7.3.4'], 'e-mail protection only')
  const leafFile = join(tempDir(t), 'leaf.pem')
  writeFileSync(leafFile, leaf!.toString())
  const openssl = await run('openssl', ['verify', '-purpose', 'smimesign', '-CAfile', caFile, leafFile])
  t.match(openssl.stdout, /: OK$/m, 'openssl accepts it for S/MIME signing')

  // A statement signed with this config verifies with openssl (against the dev CA) and python3-dkim.
  const { log } = logSink()
  const stage = new SigningStage({ config, log, hsm, clock: systemClock, events: { emit: () => {} } })
  await stage.start()
  const signed = (
    await stage.process({
      envelope: {
        id: 'q1',
        mailFrom: 'statements@bank.example',
        rcptTo: ['c@example.net'],
        account: 'statements',
        clientAddress: '127.0.0.1',
        tls: undefined,
        receivedAt: Date.now(),
      },
      message: Buffer.from('From: statements@bank.example\r\nTo: c@example.net\r\nSubject: hello\r\n\r\nbody\r\n'),
    })
  ).message
  t.ok((await opensslVerify(tempDir(t), caFile, signed)).ok, 'S/MIME verifies against the development CA')
  const record = dns.stdout
    .match(/"([^"]+)"/g)!
    .map((s) => s.slice(1, -1))
    .join('')
  t.ok(await pythonDkimVerify(signed, { dev: record }), 'DKIM verifies against the printed record')
})

t.test('a development certificate is never made on a vendor HSM', async (t) => {
  const hsm = new Hsm({
    module: '/usr/lib/softhsm/libsofthsm2.so',
    tokenLabel: 'vendor',
    pinFile: '/nonexistent',
    sessions: 1,
    reconnectIntervalMs: 1000,
    devDir: tempDir(t),
    clock: systemClock,
  })
  await t.rejects(ensureDevSmime(hsm, { dataDir: tempDir(t), address: 'a@b.example' }), /only made on the embedded SoftHSM token/)
})

t.test('the certificate the box makes itself', async (t) => {
  // X509Certificate parses what makeCertificate wrote (DER round trip through node and openssl).
  const cwd = tempDir(t)
  await node(cwd, 'first-boot', '--data-dir', './var')
  const file = devCaFile(join(cwd, 'var'))
  const pem = readFileSync(file, 'utf8')
  const text = await run('openssl', ['x509', '-noout', '-text', '-in', file])
  t.match(text.stdout, /CA:TRUE, pathlen:0/)
  t.match(text.stdout, /Certificate Sign, CRL Sign/)
  t.ok(new X509Certificate(pem).ca)
})
