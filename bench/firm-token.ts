import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Hsm } from '../hal/hsm/index.ts'
import { benchHsm } from './host.ts'

/**
 * For benchmarks: a fresh SoftHSM2 token under `dir` holding the firm's S/MIME
 * key (RSA-2048, made inside the token) as `smime/bank`, certified for
 * statements@bank.example by a throwaway CA made with openssl.
 */
export async function firmToken(dir: string, sessions: number): Promise<Hsm> {
  const hsm = await benchHsm(join(dir, 'hsm'), sessions)
  const sh = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  sh([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    join(dir, 'ca.key'),
    '-out',
    join(dir, 'ca.pem'),
    '-days',
    '30',
    '-subj',
    '/CN=Bench CA',
  ])
  await hsm.keys.generateKeyPair('smime/bank', 'rsa-2048')
  writeFileSync(join(dir, 'req.pem'), await hsm.certs.createCsr('smime/bank', 'CN=Bank,C=TW', ['statements@bank.example']))
  sh([
    'x509',
    '-req',
    '-in',
    join(dir, 'req.pem'),
    '-CA',
    join(dir, 'ca.pem'),
    '-CAkey',
    join(dir, 'ca.key'),
    '-out',
    join(dir, 'leaf.pem'),
    '-days',
    '30',
    '-copy_extensions',
    'copy',
  ])
  await hsm.certs.importCertificate('smime/bank', new X509Certificate(readFileSync(join(dir, 'leaf.pem'))), [
    new X509Certificate(readFileSync(join(dir, 'ca.pem'))),
  ])
  return hsm
}
