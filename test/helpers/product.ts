import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Hsm } from '../../hal/hsm/index.ts'
import { buildBox, type Box, type BoxDeps } from '../../firmware/box.ts'
import { parseConfig, type Config } from '../../firmware/config/load.ts'
import type { BoxEvent } from '../../firmware/events.ts'
import { ACCOUNT, accountHash, tempDir } from './box.ts'
import { testCa } from './hsm.ts'
import { logSink } from './logs.ts'
import { RawSmtp } from './smtp.ts'

type T = { teardown(fn: () => unknown): void }

/**
 * #34: the box as main builds it (buildBox), in this process, started: the product's own chain
 * and wiring, on loopback ports of its own. `raw` is the configuration (dataDir, listeners on
 * port 0 and the test account are filled in); `smime` puts an S/MIME key for bank.example in the
 * box's own token first, with a certificate from a test CA (`ca`).
 */
export async function productBox(t: T, raw: Record<string, unknown>, opts: { smime?: boolean; hsmQuirks?: BoxDeps['hsmQuirks'] } = {}) {
  const dataDir = tempDir(t)
  const sub = (raw.submission ?? {}) as Record<string, unknown>
  const full = {
    shutdown: { graceMs: 2000 },
    admin: { listen: '127.0.0.1:0' },
    ...raw,
    dataDir,
    submission: { starttlsPort: 0, implicitTlsPort: 0, accounts: [{ name: ACCOUNT.name, passwordHash: await accountHash() }], ...sub },
  }
  const config = parseConfig(full)
  const ca = opts.smime ? await smimeKeyFor(t, config) : undefined
  const { log } = logSink()
  const box = buildBox(config, { log, ...(opts.hsmQuirks ? { hsmQuirks: opts.hsmQuirks } : {}) })
  const events: BoxEvent[] = []
  box.events.add({ emit: (e) => void events.push(e) })
  await box.daemon.start()
  t.teardown(() => box.daemon.stop())
  const tls = { ca: readFileSync(join(dataDir, 'tls', 'submission.crt')), servername: 'localhost' }
  return { box, raw: full, tls, ca, events }
}

/** The S/MIME key and certificate in the box's own (development) token, as `npm run hsm -- csr` and an import would leave them. */
async function smimeKeyFor(t: T, config: Config) {
  const hsm = new Hsm({ ...config.hsm, devDir: join(config.dataDir, 'hsm'), clock: { now: () => Date.now() }, strict: true })
  await hsm.open()
  try {
    const ca = await testCa(t)
    await hsm.keys.generateKeyPair('smime/bank', 'rsa-2048')
    const csr = await hsm.certs.createCsr('smime/bank', 'CN=Bank Statements,O=Bank Ltd,C=TW', ['statements@bank.example'])
    const leaf = new X509Certificate(readFileSync(await ca.issue(csr)))
    await hsm.certs.importCertificate('smime/bank', leaf, [new X509Certificate(readFileSync(ca.cert))])
    return { ...ca, leaf }
  } finally {
    await hsm.close()
  }
}

/** One submission the way the firm's system sends it: its own connection, STARTTLS, AUTH. */
export async function submit(box: Box, tls: { ca: Buffer; servername: string }, rcpt: string, message: string): Promise<number> {
  const c = await RawSmtp.open(box.submission.endpoints.starttls.port)
  try {
    await c.handshake(tls)
    await c.authPlain(ACCOUNT.name, ACCOUNT.password)
    await c.cmd('MAIL FROM:<statements@bank.example>')
    await c.cmd(`RCPT TO:<${rcpt}>`)
    await c.cmd('DATA')
    c.write(message.replace(/\r?\n/g, '\r\n') + '.\r\n')
    return (await c.reply(30_000)).code
  } finally {
    c.close()
  }
}
