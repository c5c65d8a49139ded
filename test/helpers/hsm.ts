import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Hsm, type HsmOptions } from '../../hal/hsm/index.ts'
import { tempDir } from './box.ts'

export const run = promisify(execFile)

type T = { teardown(fn: () => unknown): void }

/**
 * The PKCS#11 implementations the HSM suites run on (#38): SoftHSM2 (the embedded default) and NSS softokn, a
 * second implementation maintained with Firefox, stricter in places (no EdDSA in bookworm's 3.87, a fixed token
 * label, its database named by an initialisation string). `SG_TEST_TOKEN=softokn` runs a suite on softokn.
 */
export type TestToken = 'softhsm' | 'softokn'
export const TEST_TOKEN: TestToken = process.env.SG_TEST_TOKEN?.startsWith('softokn') ? 'softokn' : 'softhsm'
/** `SG_TEST_TOKEN=softokn-fips`: softokn in its FIPS mode (softoknFipsModule), where a validated module's stricter rules apply. */
export const TEST_FIPS = process.env.SG_TEST_TOKEN === 'softokn-fips'

/** Where Debian's libnss3 puts softokn (multiarch). */
export const SOFTOKN_MODULE = ['/usr/lib/x86_64-linux-gnu/libsoftokn3.so', '/usr/lib/aarch64-linux-gnu/libsoftokn3.so'].find((p) => existsSync(p)) ?? ''

/**
 * A fresh softokn database in `dir`, made by NSS's own `certutil` with a random password, and what the box's
 * configuration says to use it (`hsm.module`, `hsm.moduleParameters`, `hsm.tokenLabel`, `hsm.pinFile`).
 */
export async function softoknToken(dir: string, fips = TEST_FIPS): Promise<Pick<HsmOptions, 'module' | 'moduleParameters' | 'tokenLabel' | 'pinFile'>> {
  if (!SOFTOKN_MODULE) throw new Error('NSS softokn (libsoftokn3.so) is not installed: bash provisioning/os-packages.sh')
  const pinFile = join(dir, 'user.pin')
  writeFileSync(pinFile, randomBytes(12).toString('hex'), { mode: 0o600 })
  await run('certutil', ['-N', '-d', `sql:${dir}`, '-f', pinFile])
  return {
    module: fips ? await softoknFipsModule() : SOFTOKN_MODULE,
    moduleParameters: `configdir='sql:${dir}' certPrefix='' keyPrefix='' secmod='secmod.db' flags=`,
    tokenLabel: fips ? 'NSS FIPS 140-2 Certificate DB' : 'NSS Certificate DB',
    pinFile,
  }
}

/**
 * softokn's FIPS mode (#38). libsoftokn3.so carries two function tables: `NSC_GetFunctionList`, which its
 * `C_GetFunctionList` returns, and `FC_GetFunctionList`, the FIPS one — power-up self-tests against its .chk
 * files, login before any key use, the FIPS slot and token ("NSS FIPS 140-2 Certificate DB"). Debian's build
 * does not switch on NSS_FIPS=1, and pkcs11js loads `C_GetFunctionList` only, so this is a module of ten lines
 * whose `C_GetFunctionList` is softokn's `FC_GetFunctionList`: nothing of softokn is replaced. Built once per
 * machine with gcc (installed for node-gyp) into ~/.cache/statement-gateway.
 */
export async function softoknFipsModule(): Promise<string> {
  const source = `#include <dlfcn.h>
typedef unsigned long CK_RV;
CK_RV C_GetFunctionList(void **list) {
  static CK_RV (*fc)(void **);
  if (!fc) {
    void *h = dlopen("${SOFTOKN_MODULE}", RTLD_NOW | RTLD_LOCAL);
    if (!h) return 5; /* CKR_GENERAL_ERROR */
    fc = (CK_RV (*)(void **))dlsym(h, "FC_GetFunctionList");
    if (!fc) return 5;
  }
  return fc(list);
}
`
  // The box loads a module only from where root alone can write (assertSafeModule): not /tmp, where a CI clone lives.
  const cache = join(homedir(), '.cache', 'statement-gateway')
  mkdirSync(cache, { recursive: true, mode: 0o755 })
  const out = join(cache, `softokn-fips-${createHash('sha256').update(source).digest('hex').slice(0, 16)}.so`)
  if (existsSync(out)) return out
  const work = mkdtempSync(join(cache, 'build-'))
  try {
    writeFileSync(join(work, 'fips.c'), source)
    await run('gcc', ['-shared', '-fPIC', '-O2', '-o', join(work, 'fips.so'), join(work, 'fips.c'), '-ldl'])
    renameSync(join(work, 'fips.so'), out) // whole or not at all, if two test processes build it at once
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
  return out
}

/** A fresh token for this test, in a temp dir (never a mock of pkcs11js): SoftHSM2, or softokn (`token`, else $SG_TEST_TOKEN). */
export async function devHsm(
  t: T,
  opts: {
    sessions?: number
    reconnectIntervalMs?: number
    clock?: { now(): number }
    quirks?: HsmOptions['quirks']
    threadQuirks?: HsmOptions['threadQuirks']
    token?: TestToken
  } = {},
): Promise<{ hsm: Hsm; dir: string; token: TestToken; options: HsmOptions }> {
  const dir = tempDir(t, 'sg-hsm-')
  const token = opts.token ?? TEST_TOKEN
  const options: HsmOptions = {
    ...(token === 'softokn' ? await softoknToken(dir) : { module: '', tokenLabel: 'sg-test', pinFile: '' }),
    sessions: opts.sessions ?? 4,
    reconnectIntervalMs: opts.reconnectIntervalMs ?? 1000,
    devDir: dir,
    clock: opts.clock ?? { now: () => Date.now() },
    // #33: a synchronous C_*Init or C_GenerateKey on the main thread fails the test.
    strict: true,
    quirks: opts.quirks,
    threadQuirks: opts.threadQuirks,
  }
  const hsm = new Hsm(options)
  await hsm.open()
  t.teardown(() => hsm.close())
  return { hsm, dir, token, options }
}

/**
 * A key and self-signed certificate made by `openssl req` (an issuer that is not
 * ours): `<dir>/<name>.key` and `<dir>/<name>.pem`, P-256 or RSA-2048, with
 * extensions given as `-addext` values.
 */
export async function opensslSelfSigned(
  dir: string,
  name: string,
  o: { key: 'ec' | 'rsa'; subject: string; days: number; ext?: readonly string[] },
): Promise<{ key: string; cert: string }> {
  const key = join(dir, `${name}.key`)
  const cert = join(dir, `${name}.pem`)
  const newkey = o.key === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:2048']
  const ext = (o.ext ?? []).flatMap((e) => ['-addext', e])
  await run('openssl', ['req', '-x509', ...newkey, '-nodes', '-keyout', key, '-out', cert, '-days', String(o.days), '-subj', o.subject, ...ext])
  return { key, cert }
}

/** An RSA-2048 key and a certificate request for it made by `openssl req`, outside any HSM. */
export async function opensslKeyAndCsr(key: string, csr: string, subject: string): Promise<void> {
  await run('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', subject])
}

/** A test CA made with openssl, able to issue from a CSR with the CSR's extensions. */
export async function testCa(
  t: T,
  name = 'Test Root CA',
): Promise<{ dir: string; cert: string; key: string; issue: (csrPem: string, days?: number) => Promise<string> }> {
  const dir = tempDir(t, 'sg-ca-')
  const { key, cert } = await opensslSelfSigned(dir, 'ca', { key: 'ec', subject: `/CN=${name}/O=Test/C=TW`, days: 3650 })
  let n = 0
  return {
    dir,
    cert,
    key,
    async issue(csrPem, days = 365) {
      const csr = join(dir, `req${++n}.pem`)
      const out = join(dir, `cert${n}.pem`)
      writeFileSync(csr, csrPem)
      await run('openssl', [
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        cert,
        '-CAkey',
        key,
        '-out',
        out,
        '-days',
        String(days),
        '-copy_extensions',
        'copy',
        // Random, as public CAs number them: two test CAs of one name never issue the same issuer and serial (a
        // token keeping one object per certificate, softokn, would take the second for the first).
        '-set_serial',
        `0x${randomBytes(8).toString('hex')}`,
      ])
      return out
    },
  }
}
