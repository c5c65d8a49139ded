import { fileURLToPath } from 'node:url'
import t from 'tap'
import { SOFTOKN_MODULE } from '../../helpers/hsm.ts'

/**
 * #38 "one suite, two tokens": the suites that use the HSM — the token layer, signing (S/MIME verified by
 * openssl, DKIM by python3-dkim), the spool (epoch keys, AES-GCM, crypto-shredding) and the audit trail's
 * checkpoints — run a second time here on NSS softokn, an independent PKCS#11 implementation
 * (`SG_TEST_TOKEN=softokn`, read by test/helpers/hsm.ts devHsm). Each file is a child process of its own: a
 * module is initialised once per process. Where softokn differs (no EdDSA in bookworm's NSS 3.87; keys
 * wrapped out) the suites assert what it does, never skip.
 */
const SUITES = [
  'test/hal/hsm/keys.test.ts',
  'test/hal/hsm/certs.test.ts',
  'test/hal/hsm/import.test.ts',
  'test/hal/hsm/off-thread.test.ts',
  'test/hal/hsm/token.test.ts',
  'test/hal/hsm/probe.test.ts',
  'test/firmware/signing/smime.test.ts',
  'test/firmware/signing/dkim.test.ts',
  'test/firmware/signing/encrypt.test.ts',
  'test/firmware/spool/spool.test.ts',
  'test/firmware/audit/trail.test.ts',
  'test/firmware/audit/verify.test.ts',
]

t.setTimeout(900_000) // twelve suites one after the other, each a few seconds to a minute

const root = fileURLToPath(new URL('../../../', import.meta.url))

t.ok(SOFTOKN_MODULE, `NSS softokn is installed (${SOFTOKN_MODULE || 'libsoftokn3.so not found: bash provisioning/os-packages.sh'})`)
for (const file of SUITES) void t.spawn(process.execPath, [file], { cwd: root, env: { ...process.env, SG_TEST_TOKEN: 'softokn' } }, `${file} on NSS softokn`)
