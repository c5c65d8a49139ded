import { execFile } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { tempDir } from '../helpers/box.ts'
import { writeDaemonConfig } from '../helpers/daemon.ts'
import { imageCli } from '../helpers/slots.ts'

const HSM_TOOL = new URL('../../provisioning/hsm.ts', import.meta.url).pathname

function hsmTool(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [HSM_TOOL, ...args], (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr })),
  )
}

t.test('a release is signed with the vendor key in an HSM through the same PKCS#11 layer; verify checks it', async (t) => {
  const dir = tempDir(t, 'sg-image-cli-')
  const tree = join(dir, 'tree')
  mkdirSync(join(tree, 'firmware'), { recursive: true })
  writeFileSync(join(tree, 'firmware', 'main.ts'), 'console.log(1)\n')
  writeFileSync(join(tree, 'package.json'), '{"version":"1.0.0"}\n')
  const vendor = await writeDaemonConfig(t)
  t.equal((await hsmTool(['generate', 'release/2026', 'ec-p256', '--config', vendor.path])).code, 0)
  const pub = await hsmTool(['public-key', 'release/2026', '--config', vendor.path])
  writeFileSync(join(dir, 'release.pem'), pub.out)
  /** `image build` of the small tree, security version 1, signed as `signer` says. */
  const build = (version: string, out: string, ...signer: string[]) =>
    imageCli(['build', '--tree', tree, '--version', version, '--security-version', '1', ...signer, '--out', out])
  const out = join(dir, 'r.sgfw')
  const built = await build('1.0.0', out, '--hsm-label', 'release/2026', '--config', vendor.path)
  t.equal(built.code, 0, built.out)
  t.match(built.out, /statement-gateway 1\.0\.0 \(security 1, from 0\.1\.0\), 2 files/)
  const ok = await imageCli(['verify', out, '--trust', join(dir, 'release.pem')])
  t.equal(ok.code, 0, ok.out)
  t.match(ok.out, /^OK: statement-gateway 1\.0\.0 \(security 1\), 2 files, signed by [0-9a-f]{16}/)

  // A development key from keygen: verify refuses a bundle it did not sign.
  t.equal((await imageCli(['keygen', '--out', join(dir, 'dev')])).code, 0)
  const other = await imageCli(['verify', out, '--trust', join(dir, 'dev', 'vendor-pub.pem')])
  t.equal(other.code, 1)
  t.match(other.out, /refused: no signature by a key this box trusts/)
  const dev = join(dir, 'd.sgfw')
  const devKey = ['--key', join(dir, 'dev', 'vendor-key.pem')]
  const twice = await build('1.0.1', dev, ...devKey, '--check-reproducible')
  t.match(twice.out, /reproducible: yes, the same manifest and the same bytes/)
  t.match((await imageCli(['verify', dev, '--trust', join(dir, 'dev', 'vendor-pub.pem')])).out, /^OK: statement-gateway 1\.0\.1/)
  t.equal((await build('one', dev, ...devKey)).code, 1, 'a version is major.minor.patch')
})
