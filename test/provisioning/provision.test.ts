import { execFile, execFileSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { parseConfig } from '../../firmware/config/load.ts'
import { DAEMON_ENV, DAEMON_NODE_ARGS } from '../../firmware/runtime.ts'
import { tempDir } from '../helpers/box.ts'
import { opensslSelfSigned } from '../helpers/hsm.ts'
import { Netns, nodeIn, scan } from '../helpers/netns.ts'
import { until } from '../helpers/receiver.ts'

const ROOT = new URL('../../', import.meta.url).pathname
const PROVISION = join(ROOT, 'provisioning/provision.ts')
const MAIN = join(ROOT, 'firmware/main.ts')
const EGRESS = ['10.60.0.11', '10.60.0.12', '10.60.0.13', '10.60.0.14']

function inNs(ns: string, cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile('ip', ['netns', 'exec', ns, cmd, ...args], { timeout: 120_000, cwd: opts.cwd }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  )
}

/** Lines of a child's stdout as they come. */
function lines(child: import('node:child_process').ChildProcess): string[] {
  const out: string[] = []
  let pending = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    pending += d
    const ls = pending.split('\n')
    pending = ls.pop()!
    out.push(...ls)
  })
  return out
}

t.test(
  'S8, M2: provisioning in network namespaces — a box, the firm, the internet; a statement flows from the firm out through the egress addresses',
  async (t) => {
    const ns = new Netns(t, 'sgpv')
    const box = ns.add('box')
    const firm = ns.add('firm')
    const internet = ns.add('net')
    // The cables: the box's side has no address yet; provisioning gives it its addresses.
    ns.link(box, 'eth0', [], firm, 'eth0', ['10.50.0.20/24'])
    ns.link(box, 'eth1', [], internet, 'eth0', ['10.60.0.1/24'])
    const mx = ns.spawn(internet, process.execPath, [join(ROOT, 'test/helpers/netns-receiver.ts'), '10.60.0.1', '25'])
    const received = lines(mx)
    await until(() => received.includes('listening'), 10_000)

    const dir = tempDir(t, 'sg-provision-')
    // The CA's PKCS#12 for a second sender domain, with its passphrase in a file.
    const firmCa = await opensslSelfSigned(dir, 'firm', {
      key: 'rsa',
      subject: '/CN=Firm Statements/O=Firm Securities/C=TW',
      days: 30,
      ext: ['keyUsage=critical,digitalSignature,nonRepudiation', 'extendedKeyUsage=emailProtection', 'subjectAltName=email:statements@firm.example'],
    })
    writeFileSync(join(dir, 'p12-pass'), 'p12 passphrase\n', { mode: 0o600 })
    execFileSync('openssl', [
      'pkcs12',
      '-export',
      '-inkey',
      firmCa.key,
      '-in',
      firmCa.cert,
      '-out',
      join(dir, 'firm.p12'),
      '-passout',
      `file:${join(dir, 'p12-pass')}`,
    ])
    const root = join(dir, 'root')
    const dataDir = join(dir, 'data')
    const answers = {
      hostname: 'sg1.bank.example',
      dataDir,
      inventory: { location: 'Taipei DC2, row 4, rack 14, U20', owner: 'IT Operations (ops@bank.example)', purpose: 'e-statement signing and delivery' },
      network: {
        management: { nic: 'eth0', address: '10.50.0.5/24' },
        egress: { nic: 'eth1', addresses: EGRESS.map((a) => `${a}/24`), gateway: '10.60.0.1' },
        sshFrom: ['10.50.0.0/24'],
        persist: true,
      },
      hsm: { embedded: true },
      signing: [
        {
          domain: 'bank.example',
          dkimSelector: 'sg1',
          returnPath: 'bounce.bank.example',
          smime: { csrSubject: 'CN=Bank Statements,O=Bank Ltd,C=TW', email: 'statements@bank.example' },
        },
        { domain: 'firm.example', dkimSelector: 'sg1', smime: { pkcs12: join(dir, 'firm.p12'), passphraseFile: join(dir, 'p12-pass') } },
      ],
      submission: { allowFrom: ['10.50.0.0/24'], accounts: [{ name: 'core-banking', allowFrom: [] }] },
      delivery: { bandwidthBitsPerSecond: 10_000_000, tcDevices: ['eth1'], routes: [{ domain: '*', host: '10.60.0.1', port: 25 }] },
      admin: { port: 8443, allowFrom: ['10.50.0.0/24'] },
      timeZone: 'Asia/Taipei',
      firewall: { apply: true },
      service: { install: true },
    }
    const answersFile = join(dir, 'answers.json')
    writeFileSync(answersFile, JSON.stringify(answers))

    const first = await inNs(box, process.execPath, [PROVISION, '--answers', answersFile, '--root', root])
    t.equal(first.code, 0, first.stderr + first.stdout)
    t.match(first.stdout, /^\[1\/10\] network$/m, 'progress per step')
    t.match(first.stdout, /10\.60\.0\.11\/24 on eth1: added/)
    t.match(first.stdout, /10\.60\.0\.14 reaches 10\.60\.0\.1 on the local link/)
    t.match(first.stdout, /LAB BOX: the embedded SoftHSM2 token .* NOT FOR PRODUCTION/)
    t.match(first.stdout, /test signature made and verified/)
    t.match(first.stdout, /S\/MIME certificate for firm\.example imported: .*CN=Firm Statements/)
    t.match(first.stdout, /S\/MIME certificate for firm\.example imported: .*CN=Firm Statements/)
    t.match(first.stdout, /sg1\._domainkey\.bank\.example\. IN TXT \( "v=DKIM1; k=rsa; p=/)
    t.match(first.stdout, /bounce\.bank\.example\. IN TXT "v=spf1 ip4:10\.60\.0\.11 ip4:10\.60\.0\.12 ip4:10\.60\.0\.13 ip4:10\.60\.0\.14 -all"/)
    const password = /account core-banking: password (\S+)/.exec(first.stdout)?.[1]
    t.ok(password, 'a password shown once')
    t.match(first.stdout, /one-time setup code\n\n {4}[A-Z2-9]{5}-[A-Z2-9]{5}-[A-Z2-9]{5}-[A-Z2-9]{5}\n/, 'the setup code, printed last')

    // What it left on the box.
    const addrs = JSON.parse(ns.ip(box, ['-j', 'addr', 'show', 'dev', 'eth1'])) as { addr_info: { local: string }[] }[]
    t.same(
      addrs[0]!.addr_info.map((a) => a.local).filter((a) => a.startsWith('10.')),
      EGRESS,
    )
    t.match(ns.ip(box, ['rule', 'show']), /from 10\.60\.0\.13 lookup 100/)
    t.match(readFileSync(join(root, 'etc/network/interfaces.d/statement-gateway'), 'utf8'), /up ip addr add 10\.60\.0\.12\/24 dev eth1/)
    const config = parseConfig(JSON.parse(readFileSync(join(root, 'etc/statement-gateway/config.json'), 'utf8')))
    t.match(config, { submission: { host: '10.50.0.5' }, admin: { listen: '10.50.0.5:8443' }, delivery: { tcDevices: ['eth1'] } })
    t.same(
      config.signing.domains.map((d) => [d.domain, d.smimeKey]),
      [
        ['bank.example', ''],
        ['firm.example', 'smime/firm.example'],
      ],
      'S/MIME signing where a certificate is in the HSM; the CSR domain waits for its certificate',
    )
    t.same(
      config.signing.domains.map((d) => [d.domain, d.smimeKey]),
      [
        ['bank.example', ''],
        ['firm.example', 'smime/firm.example'],
      ],
      'S/MIME signing where a certificate is in the HSM; the CSR domain waits for its certificate',
    )
    t.notMatch(readFileSync(join(root, 'etc/statement-gateway/config.json'), 'utf8'), password!, 'the password is not kept, only its hash')
    t.match(
      readFileSync(join(root, 'etc/systemd/system/statement-gateway.service.d/10-provisioned.conf'), 'utf8'),
      /AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_ADMIN/,
    )
    t.match(
      execFileSync('openssl', ['req', '-verify', '-noout', '-in', join(root, 'etc/statement-gateway/smime-bank.example.csr')], {
        encoding: 'utf8',
        stdio: 'pipe',
      }),
      '',
    )
    const inventory = JSON.parse(readFileSync(join(dataDir, 'inventory.json'), 'utf8')) as { location: string; nics: { name: string }[] }
    t.equal(inventory.location, 'Taipei DC2, row 4, rack 14, U20')
    t.ok(
      ['eth0', 'eth1'].every((n) => inventory.nics.some((x) => x.name === n)),
      'every NIC in the inventory',
    )

    // Again: idempotent, nothing changed, no new password.
    const again = await inNs(box, process.execPath, [PROVISION, '--answers', answersFile, '--root', root])
    t.equal(again.code, 0, again.stdout)
    t.match(again.stdout, /\(done before with these answers; checking\)/)
    t.match(again.stdout, /10\.60\.0\.11\/24 on eth1: already there/)
    t.match(again.stdout, /account core-banking: kept/)
    t.notMatch(again.stdout, /password \S+ {3}\(shown once/)

    // The box runs there; the firm submits; the internet's MX sees the egress addresses.
    const daemon = ns.spawn(box, process.execPath, [...DAEMON_NODE_ARGS, MAIN, '--config', join(root, 'etc/statement-gateway/config.json')], {
      ...process.env,
      ...DAEMON_ENV,
    })
    const log = lines(daemon)
    await until(() => log.some((l) => l.includes('"statement gateway started"')), 30_000)
    t.ok(
      log.some((l) => l.includes('kernel shaping (tc-tbf) installed on the egress NIC')),
      'tc on eth1',
    )
    // The firm's sending system: nodemailer in the firm's namespace, STARTTLS verified against the box's certificate.
    const sender = `import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
const nodemailer = createRequire('${join(ROOT, 'package.json')}')('nodemailer')
const [password, ca] = process.argv.slice(1)
const smtp = nodemailer.createTransport({ host: '10.50.0.5', port: 587, secure: false, requireTLS: true, auth: { user: 'core-banking', pass: password },
  tls: { ca: readFileSync(ca), servername: 'sg1.bank.example' } })
for (let i = 1; i <= 4; i++) {
  const r = await smtp.sendMail({ from: 'statements@bank.example', to: 'c' + i + '@example.net', subject: 'statement ' + i, text: 'statement' })
  console.log(r.response)
}
smtp.close()`
    const sent = await nodeIn(ns, firm, sender, [password!, join(dataDir, 'tls', 'submission.crt')])
    t.equal(
      sent
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('250 ')).length,
      4,
      'four statements accepted from the firm',
    )
    await until(() => received.filter((l) => l.startsWith('{')).length >= 4, 30_000)
    const mails = received.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { from: string; mailFrom: string })
    t.ok(
      mails.every((m) => EGRESS.includes(m.from)),
      `delivered from the egress addresses: ${[...new Set(mails.map((m) => m.from))].join(', ')}`,
    )
    t.ok(
      mails.every((m) => m.mailFrom.endsWith('@bounce.bank.example')),
      'with the return-path sender',
    )

    // The firewall: from the firm, the submission ports and the admin page; from the internet, the MX only.
    const ports = [...Array.from({ length: 1024 }, (_, i) => i + 1), 2465, 2525, 2587, 8080, 8443]
    t.same(await scan(ns, firm, '10.50.0.5', ports), [465, 587, 8443], 'seen from the firm')
    t.same(await scan(ns, internet, '10.60.0.11', ports), [25], 'seen from the internet: the return path')
    t.same(await scan(ns, internet, '10.60.0.12', ports), [], 'the other egress addresses: nothing')
    const page = await nodeIn(
      ns,
      firm,
      `import { get } from 'node:https'
import { readFileSync } from 'node:fs'
get({ host: '10.50.0.5', port: 8443, path: '/setup', ca: readFileSync(process.argv[1]), servername: 'sg1.bank.example' }, (r) => {
  console.log(r.statusCode)
  process.exit(0)
}).on('error', (e) => (console.log(e.message), process.exit(0)))`,
      [join(dataDir, 'tls', 'submission.crt')],
    )
    t.equal(page.trim(), '200', 'the admin page answers the firm with its setup page, over TLS with the box’s certificate')
    daemon.kill('SIGTERM')
    await new Promise((r) => daemon.once('exit', r))
    t.ok(existsSync(join(dataDir, 'admin', 'setup-code')), 'the setup code waits for the first administrator')
  },
)
