import { fileURLToPath } from 'node:url'
import t from 'tap'
import { SOFTOKN_MODULE, softoknFipsModule } from '../../helpers/hsm.ts'

/**
 * #38: the HSM suites once more on NSS softokn in its FIPS mode (`SG_TEST_TOKEN=softokn-fips`, test/helpers/hsm.ts
 * softoknFipsModule): power-up self-tests, the FIPS token, login before any key use, and no plaintext private or
 * secret value through C_CreateObject — which is why the box brings keys in wrapped (hal/hsm/import.ts). The token
 * layer, S/MIME signing (openssl verifies), the spool (epoch keys, AES-GCM, crypto-shredding) and the audit
 * checkpoints; DKIM, encryption and trail verification use the same token calls as these and run on the other two
 * tokens (second-token.test.ts), so they are left out here to keep npm test's time.
 */
const SUITES = [
  'test/hal/hsm/keys.test.ts',
  'test/hal/hsm/certs.test.ts',
  'test/hal/hsm/import.test.ts',
  'test/hal/hsm/off-thread.test.ts',
  'test/hal/hsm/token.test.ts',
  'test/hal/hsm/probe.test.ts',
  'test/firmware/signing/smime.test.ts',
  'test/firmware/spool/spool.test.ts',
  'test/firmware/audit/trail.test.ts',
]

t.setTimeout(900_000) // nine suites one after the other, each a few seconds to a minute

const root = fileURLToPath(new URL('../../../', import.meta.url))

t.ok(SOFTOKN_MODULE, `NSS softokn is installed (${SOFTOKN_MODULE || 'libsoftokn3.so not found: bash provisioning/os-packages.sh'})`)
t.ok(await softoknFipsModule(), 'the FIPS function table is reachable (built with gcc once)')
for (const file of SUITES)
  void t.spawn(process.execPath, [file], { cwd: root, env: { ...process.env, SG_TEST_TOKEN: 'softokn-fips' } }, `${file} on NSS softokn, FIPS mode`)
