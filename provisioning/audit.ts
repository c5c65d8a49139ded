import { createPublicKey, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { spkiSha256 } from '../hal/crypto/der.ts'
import type { Hsm } from '../hal/hsm/index.ts'
import { exportTrail } from '../firmware/audit/export.ts'
import { CHECKPOINT_KEY_LABEL } from '../firmware/keys/labels.ts'
import { searchTrail } from '../firmware/audit/search.ts'
import { PUBLIC_KEY_FILE } from '../firmware/audit/record.ts'
import { recipientHash } from '../firmware/audit/redact.ts'
import { verifyTrail } from '../firmware/audit/verify.ts'
import { failer, idsAsPositionals, printHelp, quietWhenStdoutCloses, toolConfig } from './cli.ts'
import { withToolHsm } from './tool-hsm.ts'

const USAGE = `usage: npm run audit -- <command> [--config FILE] [options]

  verify [--from DAY] [--to DAY] [--key PEM]
      Checks the trail: unbroken hash chain, signed checkpoints, no truncation.
      The public key comes from the HSM (or --key, e.g. the one the firm recorded).
      Exit 0 if intact, 1 with the first bad record named.
  export --out DIR [--from DAY] [--to DAY]
      Writes a bundle an auditor verifies without the box (sh verify.sh).
  search [--from TIME] [--to TIME] [--type T] [--id QUEUEID] [--statement ID] [--recipient ADDRESS] [--limit N]
      Prints matching records (JSON lines). A recipient is looked up by its HMAC.
  hash ADDRESS
      Prints the HMAC of a recipient address as the trail stores it.
  pubkey
      Prints the checkpoint public key (PEM) and its SHA-256 fingerprint.

DAY is YYYY-MM-DD (UTC); TIME is an ISO 8601 time or a DAY.
`

/**
 * The audit trail for auditors and admins (S6): verify, export, search.
 * Reads the trail's files; it never writes to the trail (the daemon is its
 * only writer), so it can run while the box is running.
 */
const AUDIT_OPTIONS = {
  config: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  key: { type: 'string' },
  out: { type: 'string' },
  type: { type: 'string' },
  id: { type: 'string' },
  statement: { type: 'string' },
  recipient: { type: 'string' },
  limit: { type: 'string' },
  help: { type: 'boolean' },
} as const
const { values, positionals } = parseArgs({
  args: idsAsPositionals(process.argv.slice(2), AUDIT_OPTIONS),
  options: AUDIT_OPTIONS,
  allowPositionals: true,
})
if (values.help) printHelp(USAGE, values.config)
quietWhenStdoutCloses()

const fail: (message: string, code?: number) => never = failer('audit')

const config = toolConfig('audit', values.config)
const dir = join(config.dataDir, 'audit')
const DAY = /^\d{4}-\d{2}-\d{2}$/
for (const d of [values.from, values.to]) if (d !== undefined && positionals[0] !== 'search' && !DAY.test(d)) fail(`"${d}" is not a day (YYYY-MM-DD)`, 2)

const withHsm = <T>(fn: (hsm: Hsm) => Promise<T>): Promise<T> => withToolHsm(config, fail, fn)

async function publicKey(): Promise<KeyObject> {
  if (values.key) return createPublicKey(readFileSync(values.key))
  const fromHsm = await withHsm((hsm) => hsm.keys.publicKey(CHECKPOINT_KEY_LABEL))
  const onDisk = createPublicKey(readFileSync(join(dir, PUBLIC_KEY_FILE)))
  if (!fromHsm.equals(onDisk)) process.stderr.write(`audit: WARNING: ${PUBLIC_KEY_FILE} is not the HSM's checkpoint key; verifying with the HSM's\n`)
  return fromHsm
}

function time(v: string | undefined, endOfDay: boolean): number | undefined {
  if (v === undefined) return undefined
  const t = Date.parse(DAY.test(v) ? `${v}T${endOfDay ? '23:59:59.999' : '00:00:00.000'}Z` : v)
  if (Number.isNaN(t)) fail(`"${v}" is not a time`, 2)
  return t
}

switch (positionals[0]) {
  case 'verify': {
    const key = await publicKey()
    const started = Date.now()
    const r = await verifyTrail(dir, key, {
      from: values.from,
      to: values.to,
      onProgress: (n) => process.stderr.write(`audit: ${n.toLocaleString('en')} records checked\n`),
    })
    for (const n of r.notes) process.stderr.write(`audit: note: ${n}\n`)
    const seconds = (Date.now() - started) / 1000
    if (!r.ok) {
      const p = r.problem!
      process.stdout.write(`FAIL: record ${p.seq} (${p.file} line ${p.line}): ${p.reason}\n`)
      process.exit(1)
    }
    process.stdout.write(
      `OK: ${r.records.toLocaleString('en')} records (seq ${r.firstSeq ?? '-'}–${r.lastSeq ?? '-'}), ${r.checkpoints} signed checkpoints, covered to ` +
        `seq ${r.coveredTo}; ${seconds.toFixed(1)} s\n`,
    )
    break
  }
  case 'export': {
    if (!values.out) fail('export needs --out DIR', 2)
    const r = await exportTrail(dir, values.out, { from: values.from, to: values.to })
    process.stdout.write(
      `exported ${r.records} records (seq ${r.firstSeq}–${r.lastSeq}) in ${r.segments} segment(s) with ${r.checkpoints} checkpoints to ${r.dir}; check ` +
        `it with: sh ${join(r.dir, 'verify.sh')}\n`,
    )
    break
  }
  case 'search': {
    const recipient = values.recipient
    const hash = recipient ? await withHsm((hsm) => recipientHash(hsm, recipient)) : undefined
    const limit = values.limit ? Number(values.limit) : undefined
    for await (const r of searchTrail(dir, {
      from: time(values.from, false),
      to: time(values.to, true),
      type: values.type,
      id: values.id,
      statementId: values.statement,
      recipientHash: hash,
      limit,
    })) {
      process.stdout.write(`${JSON.stringify(r)}\n`)
    }
    break
  }
  case 'hash': {
    const address = positionals[1] ?? fail('hash needs an address', 2)
    process.stdout.write(`${await withHsm((hsm) => recipientHash(hsm, address))}\n`)
    break
  }
  case 'pubkey': {
    const key = await withHsm((hsm) => hsm.keys.publicKey(CHECKPOINT_KEY_LABEL))
    process.stdout.write(key.export({ type: 'spki', format: 'pem' }))
    process.stdout.write(`SHA-256 fingerprint (of the DER SubjectPublicKeyInfo): ${spkiSha256(key)}\n`)
    break
  }
  default:
    process.stderr.write(USAGE)
    process.exit(2)
}
