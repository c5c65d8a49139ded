import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import si from 'systeminformation'
import { systemClock } from '../hal/clock.ts'
import { hashPassword } from '../hal/crypto/password.ts'
import type { Hsm } from '../hal/hsm/index.ts'
import { assertSafeModule } from '../hal/hsm/token.ts'
import { ensureAddress, ensureSourceRoutes, gatewayReachable, ifupdownStanzas, linkState } from '../hal/net/addresses.ts'
import { applyRuleset, nftRuleset, type FirewallSpec } from '../hal/net/firewall.ts'
import { writeFileAtomic } from '../hal/storage/files.ts'
import { Accounts } from '../firmware/admin/accounts.ts'
import { returnPathRecords } from '../firmware/return-path/dns.ts'
import { parseConfig, type Config } from '../firmware/config/load.ts'
import { splitHostPort } from '../firmware/config/sections/fields.ts'
import { recordAdminAction } from '../firmware/control/admin-record.ts'
import { CHECKPOINT_KEY_LABEL } from '../firmware/keys/labels.ts'
import { BOX_KEYS } from '../firmware/keys/manifest.ts'
import { probeFor } from '../firmware/keys/service.ts'
import { dkimRecords } from '../firmware/signing/dns.ts'
import { boxError } from '../firmware/box-errors.ts'
import type { Answers } from './answers.ts'

const run = promisify(execFile)

/** What the steps share: the answers, where files go, the configuration as it grows, and what to tell IT. */
export interface Context {
  answers: Answers
  /** `/` on the appliance; a directory for a lab or a test (files only, no user or service made). */
  root: string
  configFile: string
  /** The configuration being written (raw, as in the file). */
  raw: Record<string, unknown>
  hsm?: Hsm
  say: (line: string) => void
  warn: (line: string) => void
}

export const EGRESS_TABLE = 100
const addr = (cidr: string) => cidr.split('/')[0]!
export const inRoot = (c: Context, path: string) => join(c.root, path)

/** S8: the inventory the regulator asks for, from systeminformation plus what IT says; in the data directory for the dashboard. */
export async function inventory(c: Context): Promise<void> {
  const [system, cpu, mem, disks, nics] = await Promise.all([si.system(), si.cpu(), si.mem(), si.diskLayout(), si.networkInterfaces()])
  const a = c.answers
  const config = parseConfig(c.raw)
  const doc = {
    provisionedAt: new Date().toISOString(),
    hostname: a.hostname,
    ...a.inventory,
    system: { manufacturer: system.manufacturer, model: system.model, serial: system.serial },
    cpu: { brand: `${cpu.manufacturer} ${cpu.brand}`.trim(), cores: cpu.cores },
    memoryBytes: mem.total,
    disks: disks.map((d) => ({ name: d.name || d.device, type: d.type, bytes: d.size })),
    nics: (Array.isArray(nics) ? nics : [nics]).map((n) => ({ name: n.iface, mac: n.mac, state: n.operstate, speedMbps: n.speed })),
    addresses: { management: a.network.management.address, egress: a.network.egress.addresses },
    ports: listeners(config).map((l) => ({ name: l.name, address: l.address, port: l.port })),
  }
  writeFileAtomic(join(a.dataDir, 'inventory.json'), `${JSON.stringify(doc, null, 2)}\n`, 0o640)
  const model = [doc.system.manufacturer, doc.system.model].filter(Boolean).join(' ') || 'unknown model'
  c.say(`${model}, serial ${doc.system.serial || '-'}, ${doc.cpu.cores} cores, ${Math.round(mem.total / 2 ** 30)} GiB`)
  for (const n of doc.nics) c.say(`  NIC ${n.name} ${n.mac} ${n.state}${n.speedMbps ? ` ${n.speedMbps} Mbit/s` : ''}`)
  if (c.hsm) {
    const detail = JSON.stringify({
      location: doc.location,
      owner: doc.owner,
      purpose: doc.purpose,
      serial: doc.system.serial,
      addresses: doc.addresses,
      ports: doc.ports,
    })
    await recordAdminAction(config, c.hsm, systemClock, { action: 'box.inventory', target: a.hostname, outcome: 'ok', detail })
  }
}

/** M2, S8: the management address and the four egress addresses on their NICs, mail routed out through the egress gateway, and checked. */
export async function network(c: Context): Promise<void> {
  const n = c.answers.network
  for (const [nic, cidr] of [[n.management.nic, n.management.address], ...n.egress.addresses.map((x) => [n.egress.nic, x] as const)] as const)
    c.say(`${cidr} on ${nic}: ${(await ensureAddress(nic, cidr)) ? 'added' : 'already there'}`)
  if (n.egress.gateway) {
    await ensureSourceRoutes(EGRESS_TABLE, n.egress.gateway, n.egress.nic, n.egress.addresses)
    c.say(`mail from the egress addresses leaves through ${n.egress.gateway} on ${n.egress.nic} (routing table ${EGRESS_TABLE})`)
  }
  for (const [nic, gw, from] of [
    [n.management.nic, n.management.gateway, [n.management.address]],
    [n.egress.nic, n.egress.gateway, n.egress.addresses],
  ] as const) {
    const link = await linkState(nic)
    if (link.operstate !== 'UP' && link.operstate !== 'UNKNOWN') c.warn(`${nic} is ${link.operstate}: check its cable`)
    if (!gw) continue
    for (const f of from) {
      if (await gatewayReachable(gw, nic, f)) c.say(`${addr(f)} reaches ${gw} on the local link`)
      else c.warn(`${addr(f)} does not reach ${gw} on ${nic}: check the switch port and VLAN`)
    }
  }
  if (n.persist) {
    const file = inRoot(c, '/etc/network/interfaces.d/statement-gateway')
    writeFileAtomic(
      file,
      ifupdownStanzas({
        management: n.management,
        egress: { nic: n.egress.nic, addresses: n.egress.addresses, gateway: n.egress.gateway, table: EGRESS_TABLE },
      }),
      0o644,
    )
    c.say(`kept for the next boot in ${file}`)
  }
}

/** M6: the HSM — the vendor's module with its PIN in a 0600 file, or the embedded token of a lab box — and a test signature. */
export function hsmSection(c: Context): Record<string, unknown> {
  const h = c.answers.hsm
  if (h.embedded) {
    c.warn('LAB BOX: the embedded SoftHSM2 token keeps keys in files on this disk. NOT FOR PRODUCTION: use the HSM vendor’s module.')
    return {}
  }
  assertSafeModule(h.module)
  let pinFile = h.pinFile
  if (!pinFile) {
    if (!h.pin) throw boxError('EANSWERS_INVALID', 'hsm: the user PIN (asked without echo), or pinFile')
    pinFile = '/etc/statement-gateway/hsm.pin'
    writeFileAtomic(inRoot(c, pinFile), `${h.pin}\n`, 0o600)
    pinFile = inRoot(c, pinFile)
    c.say(`PIN written to ${pinFile} (0600)`)
  }
  return { module: h.module, tokenLabel: h.tokenLabel, pinFile }
}

/** The HSM answers: its capabilities probed for what the box needs (#38), the box's keys made, one signature made and checked. */
export async function hsmCheck(c: Context, hsm: Hsm): Promise<void> {
  const probe = await probeFor(hsm, parseConfig(c.raw))
  const listed = Object.values(probe.mechanisms).filter((m) => m !== 'absent').length
  c.say(
    `HSM probe: ${listed} of the box's mechanisms listed; throw-away keys ${Object.entries(probe.keys)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  )
  const made = await hsm.ensureKeys(BOX_KEYS)
  if (made.length) c.say(`made in the HSM: ${made.join(', ')}`)
  const data = randomBytes(32)
  const sig = await hsm.keys.sign(CHECKPOINT_KEY_LABEL, 'ecdsa-p256-sha256', data)
  const { verify } = await import('node:crypto')
  if (!verify('sha256', data, await hsm.keys.publicKey(CHECKPOINT_KEY_LABEL), sig)) throw boxError('EINTERNAL', 'the HSM made a signature that does not verify')
  const info = await hsm.token.info()
  c.say(`test signature made and verified in token "${info.label}" (${info.manufacturer} ${info.model})`)
}

/** M4, M5: DKIM keys, S/MIME key and CSR (or the CA's PKCS#12), and the DNS records to publish. */
export async function keys(c: Context, hsm: Hsm): Promise<void> {
  const domains: Record<string, unknown>[] = []
  for (const s of c.answers.signing) {
    const d: Record<string, unknown> = { domain: s.domain, dkimSelector: s.dkimSelector }
    const label = `smime/${s.domain}`
    if (s.smime && 'pkcs12' in s.smime) {
      if (!(await hsm.keys.exists(label, 'private'))) {
        const { leaf } = await hsm.certs.importPkcs12(label, readFileSync(s.smime.pkcs12), readFileSync(s.smime.passphraseFile, 'utf8').trim())
        c.say(`S/MIME certificate for ${s.domain} imported: ${leaf.subject.replace(/\n/g, ', ')}, serial ${leaf.serialNumber}`)
      }
      d.smimeKey = label
    } else if (s.smime) {
      await hsm.keys.ensureKeyPair(label, 'rsa-2048')
      const csr = await hsm.certs.createCsr(label, s.smime.csrSubject, [s.smime.email])
      const file = inRoot(c, `/etc/statement-gateway/smime-${s.domain}.csr`)
      writeFileAtomic(file, csr, 0o644)
      const [cert] = await hsm.certs.chain(label).catch(() => [])
      if (cert) d.smimeKey = label
      c.say(
        cert
          ? `S/MIME certificate for ${s.domain} in the HSM`
          : `S/MIME key for ${s.domain} made in the HSM; send ${file} to the CA, then: npm run hsm -- import-cert ${label} CERT.pem and run provision again`,
      )
    }
    domains.push(d)
  }
  const signing = (c.raw.signing ??= {}) as Record<string, unknown>
  signing.domains = domains
  c.raw.returnPath = {
    ...(c.raw.returnPath as object),
    domains: c.answers.signing.filter((s) => s.returnPath).map((s) => ({ from: s.domain, returnPath: s.returnPath })),
  }
  const config = parseConfig(c.raw)
  const lines = [
    `; DNS records for ${c.answers.hostname}, written by npm run provision`,
    ...(await dkimRecords(config, hsm)).map((r) => r.zone),
    ...returnPathRecords(config).map((r) => r.zone),
  ]
  const file = inRoot(c, '/etc/statement-gateway/dns-records.txt')
  writeFileAtomic(file, `${lines.join('\n')}\n`, 0o644)
  c.say(`DNS records to publish (also in ${file}):`)
  for (const l of lines.slice(1)) c.say(`  ${l}`)
}

/** Submission accounts: a password generated for each new one, shown once; existing ones keep theirs. */
export async function accounts(c: Context, existing: { name: string; passwordHash: string }[]): Promise<void> {
  const out = []
  for (const a of c.answers.submission.accounts) {
    const had = existing.find((x) => x.name === a.name)
    if (had) {
      out.push({ name: a.name, passwordHash: had.passwordHash, allowFrom: a.allowFrom })
      c.say(`account ${a.name}: kept (its password is unchanged)`)
      continue
    }
    const password = randomBytes(18).toString('base64url')
    out.push({ name: a.name, passwordHash: await hashPassword(password), allowFrom: a.allowFrom })
    c.say(`account ${a.name}: password ${password}   (shown once; give it to the firm's sending system now)`)
  }
  const submission = (c.raw.submission ??= {}) as Record<string, unknown>
  submission.accounts = out
}

/** Signatures and the M11 deadline depend on the clock: the time zone, and whether NTP keeps the clock right. */
export async function clock(c: Context): Promise<void> {
  const system = Intl.DateTimeFormat().resolvedOptions().timeZone
  if (system !== c.answers.timeZone) c.say(`the system clock runs in ${system}; reports and deadlines use ${c.answers.timeZone} (as configured)`)
  try {
    const { stdout } = await run('timedatectl', ['show', '-p', 'NTPSynchronized', '--value'])
    if (stdout.trim() === 'yes') c.say('the clock is synchronised by NTP')
    else c.warn('the clock is NOT synchronised by NTP: configure systemd-timesyncd or chrony before going live')
  } catch (err) {
    c.warn(`cannot tell whether NTP keeps the clock right (${(err as Error).message.split('\n')[0]}): check it before going live`)
  }
}

/** The listeners the configuration has, for the firewall and the inventory. */
export function listeners(config: Config): FirewallSpec['listeners'] {
  const s = config.submission
  const out: FirewallSpec['listeners'][number][] = [
    { name: 'submission STARTTLS', address: s.host, port: s.starttlsPort, from: s.allowFrom },
    { name: 'submission implicit TLS', address: s.host, port: s.implicitTlsPort, from: s.allowFrom },
  ]
  if (config.admin.enabled) {
    const a = splitHostPort(config.admin.listen)
    out.push({ name: 'admin page', address: a.host, port: a.port, from: [...config.admin.allowFrom, ...config.admin.metrics.allowFrom] })
  }
  if (config.returnPath.enabled && config.returnPath.domains.length) {
    const r = splitHostPort(config.returnPath.listen)
    out.push({ name: 'return path (bounces, read receipts)', address: r.host, port: r.port, from: [] })
  }
  if (config.reports.tracking.baseUrl) {
    const r = splitHostPort(config.reports.tracking.listen)
    out.push({ name: 'open and click tracking', address: r.host, port: r.port, from: [] })
  }
  return out.filter((l) => l.port > 0)
}

/** S8, ETSI 5.6: the nftables ruleset from the configuration, written and (on the box) applied. */
export async function firewall(c: Context): Promise<void> {
  const config = parseConfig(c.raw)
  const d = config.delivery
  const spec: FirewallSpec = {
    listeners: listeners(config),
    ssh: { port: 22, from: c.answers.network.sshFrom },
    egress: d.egress.map((e) => e.address),
    mailPorts: [...new Set([d.smtpPort, ...d.routes.map((r) => r.port)])],
    internalMail: d.auditCopy.host ? [{ host: d.auditCopy.host, port: d.auditCopy.port }] : [],
  }
  const file = inRoot(c, '/etc/nftables.d/statement-gateway.nft')
  mkdirSync(dirname(file), { recursive: true })
  writeFileAtomic(file, nftRuleset(spec), 0o644)
  await applyRuleset(file, { check: true })
  for (const l of spec.listeners) c.say(`open: ${l.name} ${l.address}:${l.port} from ${l.from.length ? l.from.join(', ') : 'anywhere'}`)
  c.say(`open: SSH from ${spec.ssh!.from.join(', ') || 'nowhere'}; mail leaves only from ${spec.egress.join(', ')}`)
  if (c.answers.firewall.apply) {
    await applyRuleset(file)
    c.say(`applied (${file}; include it from /etc/nftables.conf to load it at boot)`)
  } else c.say(`written to ${file}, not applied`)
}

/** The hardened unit, its drop-in (CAP_NET_ADMIN only with kernel shaping), the system user, and the service enabled. */
export async function service(c: Context, unitSource: string): Promise<void> {
  const unitDir = inRoot(c, '/etc/systemd/system')
  writeFileAtomic(join(unitDir, 'statement-gateway.service'), readFileSync(unitSource, 'utf8'), 0o644)
  const tc = c.answers.delivery.tcDevices.length > 0
  const dropIn = [
    '# Written by npm run provision.',
    '[Service]',
    ...(c.answers.dataDir !== '/var/lib/statement-gateway' ? [`ReadWritePaths=${c.answers.dataDir}`] : []),
    ...(tc
      ? [
          '# Kernel shaping on the egress NIC (delivery.tcDevices).',
          'CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_ADMIN',
          'AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_ADMIN',
        ]
      : []),
  ]
  writeFileAtomic(join(unitDir, 'statement-gateway.service.d', '10-provisioned.conf'), `${dropIn.join('\n')}\n`, 0o644)
  c.say(`unit installed in ${unitDir}${tc ? ' (with CAP_NET_ADMIN for tc)' : ''}`)
  if (c.root !== '/' || !c.answers.service.install) return c.say('system user and service left alone (--root, or service.install false)')
  await run('getent', ['passwd', 'statement-gateway']).catch(() =>
    run('useradd', ['--system', '--home-dir', c.answers.dataDir, '--no-create-home', '--shell', '/usr/sbin/nologin', 'statement-gateway']),
  )
  for (const p of [c.answers.dataDir, c.configFile]) if (existsSync(p)) await run('chown', ['-R', 'statement-gateway:statement-gateway', p])
  await run('systemctl', ['daemon-reload'])
  await run('systemctl', ['enable', 'statement-gateway.service'])
  c.say('system user statement-gateway made; service enabled (start it: systemctl start statement-gateway)')
}

/** S8: the first administrator's one-time setup code, valid 24 hours, printed last. */
export function setupCode(c: Context, hsm: Hsm): string | undefined {
  const a = new Accounts({ dataDir: c.answers.dataDir, hsm, clock: systemClock, events: { emit: () => undefined } })
  if (a.hasAdmin()) return undefined
  return a.ensureSetupCode() ?? a.pendingSetupCode()
}
