/**
 * RSA-2048 signatures per second through hal/hsm against raw pkcs11js, in the
 * same run, on a fresh SoftHSM2 token (issue: HSM layer).
 *
 *   npm run bench:hsm [-- --seconds 3 --callers 4 --rounds 5]
 *
 * Rounds alternate A B C A B C … and medians are reported, since this machine
 * is noisy. Ratios, not absolute rates, are the figures that carry over.
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { readPinFile } from '../hal/hsm/index.ts'
import { pkcs11 as P } from '../hal/hsm/pkcs11.ts'
import { benchHsm } from './host.ts'

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '2' }, callers: { type: 'string', default: '4' }, rounds: { type: 'string', default: '5' } },
})
const seconds = Number(values.seconds)
const callers = Number(values.callers)
const rounds = Number(values.rounds)
const data = Buffer.alloc(200, 0x61) // about the size of CMS signed attributes

const dir = mkdtempSync(join(tmpdir(), 'sg-bench-hsm-'))
const hsm = await benchHsm(dir, callers)
await hsm.keys.generateKeyPair('bench/rsa', 'rsa-2048')

// Raw pkcs11js: a second application session on the same token, synchronous C_Sign in a loop.
const raw = new P.PKCS11()
raw.load('/usr/lib/softhsm/libsofthsm2.so')
try {
  raw.C_Initialize({ flags: P.CKF_OS_LOCKING_OK })
} catch {
  // the layer already initialised the (shared) module in this process
}
const slot = raw.C_GetSlotList(true).find((s) => raw.C_GetTokenInfo(s).label.replace(/[\s\0]+$/, '') === 'bench')!
const session = raw.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
try {
  raw.C_Login(session, P.CKU_USER, readPinFile(join(dir, 'user.pin')))
} catch {
  // already logged in through the layer's sessions (same process)
}
raw.C_FindObjectsInit(session, [
  { type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY },
  { type: P.CKA_LABEL, value: 'bench/rsa' },
])
const [rawKey] = raw.C_FindObjects(session, 1)
raw.C_FindObjectsFinal(session)

async function measure(fn: () => Promise<number>): Promise<number> {
  const start = process.hrtime.bigint()
  const n = await fn()
  return n / (Number(process.hrtime.bigint() - start) / 1e9)
}

const until = () => Date.now() + seconds * 1000

const variants: Record<string, () => Promise<number>> = {
  'raw pkcs11js, 1 caller (sync)': () => {
    let n = 0
    for (const end = until(); Date.now() < end; n++) {
      raw.C_SignInit(session, { mechanism: P.CKM_SHA256_RSA_PKCS }, rawKey!)
      raw.C_Sign(session, data, Buffer.alloc(256))
    }
    return Promise.resolve(n)
  },
  'raw pkcs11js, 1 caller (async)': async () => {
    let n = 0
    for (const end = until(); Date.now() < end; n++) {
      raw.C_SignInit(session, { mechanism: P.CKM_SHA256_RSA_PKCS }, rawKey!)
      await raw.C_SignAsync(session, data, Buffer.alloc(256))
    }
    return n
  },
  'hal/hsm, 1 caller': async () => {
    let n = 0
    for (const end = until(); Date.now() < end; n++) await hsm.keys.sign('bench/rsa', 'rsa-pkcs1-sha256', data)
    return n
  },
  [`hal/hsm, ${callers} callers`]: async () => {
    let n = 0
    const end = until()
    await Promise.all(
      Array.from({ length: callers }, async () => {
        for (; Date.now() < end; n++) await hsm.keys.sign('bench/rsa', 'rsa-pkcs1-sha256', data)
      }),
    )
    return n
  },
}

const results: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]))
for (let r = 0; r < rounds; r++) {
  for (const [name, fn] of Object.entries(variants)) results[name]!.push(await measure(fn))
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const med = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)]))
const [rawName, rawAsyncName, oneName, manyName] = Object.keys(variants) as [string, string, string, string]
const summary = {
  date: new Date().toISOString(),
  machine: `${(await import('node:os')).cpus().length} cores, ${(await import('node:os')).cpus()[0]?.model}`,
  node: process.version,
  seconds,
  rounds,
  signaturesPerSecond: Object.fromEntries(Object.entries(med).map(([k, v]) => [k, Math.round(v)])),
  layerOverheadVsRaw: `${((1 - med[oneName]! / med[rawName]!) * 100).toFixed(1)} %`,
  layerOverheadVsRawAsync: `${((1 - med[oneName]! / med[rawAsyncName]!) * 100).toFixed(1)} %`,
  manyCallersVsOne: `${(med[manyName]! / med[oneName]!).toFixed(2)}×`,
  targets: { layerOverheadAtMost: '10 %', manyCallersVsOneAtLeast: '1.6×' },
}
process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`)
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true })
writeFileSync(join(import.meta.dirname, 'results', 'hsm-sign.json'), `${JSON.stringify(summary, null, 2)}\n`)

raw.C_CloseSession(session)
await hsm.close()
rmSync(dir, { recursive: true, force: true })
