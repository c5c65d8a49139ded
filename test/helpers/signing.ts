import { X509Certificate } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createRequire } from 'node:module'
import type { BoxEvent, EventSink } from '../../firmware/events.ts'
import type { Hsm } from '../../hal/hsm/index.ts'
import { parseConfig } from '../../firmware/config/load.ts'
import { dkimKeyLabel } from '../../firmware/keys/labels.ts'
import { SigningStage } from '../../firmware/pipeline/stages/signing.ts'
import { dkimTxtValue, type HashFactory } from '../../firmware/signing/dkim.ts'
import type { Submitted } from '../../firmware/pipeline/handoff.ts'
import { decodedBody, parseMessage } from '../../firmware/mime/tree.ts'
import { tempDir } from './box.ts'
import { devHsm, run, testCa } from './hsm.ts'
import { logSink } from './logs.ts'

type T = { teardown(fn: () => unknown): void }

export interface SigningSetup {
  hsm: Hsm
  /** The SoftHSM token's directory (its tokens/ folder can be moved away to simulate removal). */
  hsmDir: string
  ca: Awaited<ReturnType<typeof testCa>>
  leaf: X509Certificate
  stage: SigningStage
  /** What the stage emitted (signing.signed). */
  events: BoxEvent[]
  records: Record<string, unknown>[]
  dir: string
  now: { value: number }
  sign(message: string | Buffer, rcptTo?: string[]): Promise<Buffer>
  dkimRecord(): Promise<string>
}

/**
 * A SoftHSM token with an S/MIME key generated inside it, a certificate for it
 * issued by a test CA through a CSR, and a signing stage over both.
 */
export async function signingSetup(
  t: T,
  opts: {
    keyType?: 'rsa-2048' | 'ec-p256'
    email?: string
    signing?: Record<string, unknown>
    days?: number
    sessions?: number
    events?: EventSink
    hash?: HashFactory
  } = {},
): Promise<SigningSetup> {
  const { hsm, dir: hsmDir } = await devHsm(t, { sessions: opts.sessions ?? 4 })
  const ca = await testCa(t)
  await hsm.keys.generateKeyPair('smime/bank', opts.keyType ?? 'rsa-2048')
  const csr = await hsm.certs.createCsr('smime/bank', 'CN=Bank Statements,O=Bank Ltd,C=TW', [opts.email ?? 'statements@bank.example'])
  const leaf = new X509Certificate(readFileSync(await ca.issue(csr, opts.days)))
  await hsm.certs.importCertificate('smime/bank', leaf, [new X509Certificate(readFileSync(ca.cert))])
  const dir = tempDir(t)
  const config = parseConfig({
    dataDir: dir,
    signing: { domains: [{ domain: 'bank.example', smimeKey: 'smime/bank', dkimSelector: 'sg1' }], ...(opts.signing ?? {}) },
  })
  const { log, records } = logSink()
  const now = { value: Date.now() }
  const events: BoxEvent[] = []
  const stage = new SigningStage({
    config,
    log,
    hsm,
    clock: { now: () => now.value },
    events: { emit: (e) => (events.push(e), opts.events?.emit(e)) },
    ...(opts.hash ? { hash: opts.hash } : {}),
  })
  await stage.start()
  return {
    hsm,
    hsmDir,
    ca,
    leaf,
    stage,
    events,
    records,
    dir,
    now,
    async sign(message, rcptTo = ['customer@example.net']) {
      const mail: Submitted = {
        envelope: { id: 'test', mailFrom: 'statements@bank.example', rcptTo, account: 'a', clientAddress: '127.0.0.1', tls: undefined, receivedAt: now.value },
        message: Buffer.isBuffer(message) ? message : Buffer.from(message, 'utf8'),
      }
      return (await stage.process(mail)).message
    },
    async dkimRecord() {
      return dkimTxtValue(await hsm.keys.publicKey(dkimKeyLabel('bank.example', 'sg1')))
    },
  }
}

/** `openssl cms -verify` (and `openssl smime -verify`) of an S/MIME message against the test CA. */
export async function opensslVerify(dir: string, caFile: string, message: Buffer, tool: 'cms' | 'smime' = 'cms'): Promise<{ ok: boolean; output: string }> {
  const file = join(dir, `m-${Math.random().toString(36).slice(2)}.eml`)
  writeFileSync(file, message)
  try {
    const r = await run('openssl', [tool, '-verify', '-CAfile', caFile, '-in', file, '-out', '/dev/null'])
    return { ok: true, output: r.stdout + r.stderr }
  } catch (err) {
    const e = err as { stdout: string; stderr: string }
    return { ok: false, output: e.stdout + e.stderr }
  }
}

/** The two parts of a multipart/signed message: the signed entity bytes and the DER signature. */
export function signedParts(message: Buffer): { content: Buffer; signature: Buffer } {
  const [content, signature] = parseMessage(message).children
  return { content: message.subarray(content!.start, content!.end), signature: decodedBody(message, signature!) }
}

const PY_VERIFY = `
import sys, json, dkim
msg = sys.stdin.buffer.read()
records = json.loads(sys.argv[1])
index = int(sys.argv[2])
def dnsfunc(name, timeout=5):
    n = name.decode() if isinstance(name, bytes) else name
    r = records.get(n.rstrip('.'))
    return r.encode() if r else None
d = dkim.DKIM(msg)
print('PASS' if d.verify(idx=index, dnsfunc=dnsfunc) else 'FAIL')
`

/**
 * python3-dkim (Debian's /usr/bin/python3) with stubbed DNS: `record` is the
 * sg1 selector's value, or a map of selector → value; `index` picks which
 * DKIM-Signature header to check (0 = topmost).
 */
export async function pythonDkimVerify(message: Buffer, record: string | Record<string, string>, index = 0): Promise<boolean> {
  const { spawn } = await import('node:child_process')
  const records = Object.fromEntries(
    Object.entries(typeof record === 'string' ? { sg1: record } : record).map(([sel, v]) => [`${sel}._domainkey.bank.example`, v]),
  )
  return new Promise((resolve, reject) => {
    const p = spawn('/usr/bin/python3', ['-c', PY_VERIFY, JSON.stringify(records), String(index)])
    let out = ''
    let err = ''
    p.stdout.on('data', (d: Buffer) => (out += d.toString()))
    p.stderr.on('data', (d: Buffer) => (err += d.toString()))
    p.on('close', () => (out.includes('PASS') ? resolve(true) : out.includes('FAIL') ? resolve(false) : reject(new Error(err))))
    p.stdin.end(message)
  })
}

/** mailauth's DKIM verifier with a resolver that knows only our records (sg1, or a selector → value map). */
export async function mailauthDkimVerify(message: Buffer, record: string | Record<string, string>): Promise<string[]> {
  const require = createRequire(import.meta.url)
  const { dkimVerify } = require('mailauth/lib/dkim/verify') as { dkimVerify: (m: Buffer, o: object) => Promise<{ results: { status: { result: string } }[] }> }
  const records = typeof record === 'string' ? { sg1: record } : record
  const resolver = async (name: string, type: string) => {
    const sel = name.replace(/\._domainkey\.bank\.example$/, '')
    if (type === 'TXT' && records[sel]) return [[records[sel]]]
    throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' })
  }
  const res = await dkimVerify(message, { resolver })
  return res.results.map((r) => r.status.result)
}
