import { createHash } from 'node:crypto'
import { copyFile, mkdir, readFile, readdir, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { boxError } from '../box-errors.ts'
import { PUBLIC_KEY_FILE } from './record.ts'
import { checkpointName, recordLink, type Checkpoint } from './record.ts'
import { checkpointDays, listSegments, readEnd, readLines } from './segments.ts'

export interface ExportResult {
  dir: string
  segments: number
  records: number
  firstSeq: number
  lastSeq: number
  checkpoints: number
}

/**
 * Writes the days `from`…`to` of the trail as a bundle an auditor verifies
 * without the box (S6): the segments as stored, the checkpoints covering
 * them, the public key, the link to the record before the range
 * (anchor.json), SHA256SUMS, and verify.sh + VERIFY.md, which check all of it
 * with sh, gzip, sha256sum and openssl only.
 */
export async function exportTrail(auditDir: string, out: string, range: { from?: string; to?: string } = {}): Promise<ExportResult> {
  const all = await listSegments(auditDir)
  const segments = all.filter((s) => (!range.from || s.day >= range.from) && (!range.to || s.day <= range.to))
  if (!segments.length) throw boxError('EAUDIT_UNREADABLE', `no audit segments between ${range.from ?? 'the start'} and ${range.to ?? 'today'}`)
  await mkdir(out, { recursive: true, mode: 0o700 })
  if ((await readdir(out)).length) throw boxError('EAUDIT_UNREADABLE', `${out} is not empty`)

  let firstSeq = 0
  let firstPrev = ''
  let lastSeq = 0
  let records = 0
  for (const seg of segments) {
    const target = join(out, basename(seg.file))
    if (seg.gz) await copyFile(seg.file, target)
    // The live day: complete lines only (one may be half-written right now).
    const lines: string[] = []
    for await (const l of readLines(seg)) {
      if (!l.complete) break
      const link = recordLink(l.text)
      if (link && !firstSeq) ({ seq: firstSeq, prev: firstPrev } = link)
      if (link) lastSeq = link.seq
      records++
      if (!seg.gz) lines.push(l.text, '\n')
    }
    if (!seg.gz) await writeFile(target, lines.join(''), { mode: 0o600 })
  }

  const before = all[all.indexOf(segments[0]!) - 1]
  const end = before ? await readEnd(auditDir, before.day) : undefined
  const anchor = end ?? { seq: firstSeq - 1, hash: firstPrev }
  await writeFile(join(out, 'anchor.json'), `${JSON.stringify({ seq: anchor.seq, hash: anchor.hash })}\n`)

  const checkpoints: Checkpoint[] = []
  for (const day of await checkpointDays(auditDir, range.from)) {
    for (const line of (await readFile(join(auditDir, checkpointName(day)), 'utf8')).split('\n')) {
      if (!line) continue
      const c = JSON.parse(line) as Checkpoint
      if (c.seq >= firstSeq && c.seq <= lastSeq) checkpoints.push(c)
    }
  }
  await writeFile(
    join(out, 'checkpoints.jsonl'),
    checkpoints.map((c) => `${JSON.stringify({ seq: c.seq, head: c.head, time: c.time, sig: c.sig })}\n`).join(''),
  )
  await copyFile(join(auditDir, PUBLIC_KEY_FILE), join(out, PUBLIC_KEY_FILE))
  await writeFile(join(out, 'verify.sh'), VERIFY_SH, { mode: 0o755 })
  await writeFile(join(out, 'VERIFY.md'), VERIFY_MD)

  const sums: string[] = []
  for (const name of (await readdir(out)).sort()) {
    if (name === 'SHA256SUMS') continue
    sums.push(
      `${createHash('sha256')
        .update(await readFile(join(out, name)))
        .digest('hex')}  ${name}\n`,
    )
  }
  await writeFile(join(out, 'SHA256SUMS'), sums.join(''))
  return { dir: out, segments: segments.length, records, firstSeq, lastSeq, checkpoints: checkpoints.length }
}

const VERIFY_SH = `#!/bin/sh
# Verifies a Statement Gateway audit trail export with standard tools only:
# sh, gzip, sha256sum, openssl, sed, cut, grep. See VERIFY.md for the rules.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

sha256sum --quiet -c SHA256SUMS || fail "a file differs from SHA256SUMS"

# 1. Each checkpoint is signed by the box's key (ECDSA P-256, SHA-256).
: > "$tmp/signed"
while IFS= read -r c; do
  seq=$(printf '%s' "$c" | sed -n 's/.*"seq":\\([0-9]*\\).*/\\1/p')
  head=$(printf '%s' "$c" | sed -n 's/.*"head":"\\([0-9a-f]*\\)".*/\\1/p')
  time=$(printf '%s' "$c" | sed -n 's/.*"time":"\\([^"]*\\)".*/\\1/p')
  printf 'statement-gateway audit checkpoint v1\\nseq=%s\\nhead=%s\\ntime=%s\\n' "$seq" "$head" "$time" > "$tmp/payload"
  printf '%s' "$c" | sed -n 's/.*"sig":"\\([^"]*\\)".*/\\1/p' | openssl base64 -d -A > "$tmp/sig"
  openssl dgst -sha256 -verify checkpoint-key.pem -signature "$tmp/sig" "$tmp/payload" > /dev/null || fail "checkpoint for seq $seq: invalid signature"
  echo "$seq $head" >> "$tmp/signed"
done < checkpoints.jsonl

# 2. The hash chain: consecutive seq, each prev = SHA-256 of the line before.
expect=$(sed -n 's/.*"seq":\\([0-9]*\\).*/\\1/p' anchor.json)
expect=$((expect + 1))
prev=$(sed -n 's/.*"hash":"\\([0-9a-f]*\\)".*/\\1/p' anchor.json)
gzip -dcf trail-*.jsonl* | {
  : > "$tmp/hashes"
  while IFS= read -r line; do
    seq=\${line#'{"seq":'}; seq=\${seq%%,*}
    link=\${line#*'"prev":"'}; link=\${link%%'"'*}
    [ "$seq" = "$expect" ] || fail "expected record $expect, found seq $seq (record missing, inserted or moved)"
    [ "$link" = "$prev" ] || fail "record $((seq - 1)) does not match the link in record $seq (record changed)"
    prev=$(printf '%s' "$line" | sha256sum | cut -d' ' -f1)
    echo "$seq $prev" >> "$tmp/hashes"
    expect=$((seq + 1))
  done
  echo "$((expect - 1))" > "$tmp/last"
}

# 3. Each checkpoint matches the chain at its seq.
while read -r seq head; do
  grep -qx "$seq $head" "$tmp/hashes" || fail "checkpoint for seq $seq does not match the records (rewritten)"
done < "$tmp/signed"

last=$(cat "$tmp/last")
covered=$(cut -d' ' -f1 "$tmp/signed" | sort -n | tail -n 1)
echo "OK: records up to seq $last form an unbroken chain; $(wc -l < "$tmp/signed") signed checkpoints match it, the last at seq \${covered:-none}."
`

const VERIFY_MD = `# Verifying this audit trail export

This bundle is a range of a Statement Gateway's audit trail, with what is
needed to check it without the box. Run \`sh verify.sh\`; it prints \`OK: …\` or
the first problem it finds. It uses sh, gzip, sha256sum, openssl, sed, cut and
grep, and takes about a millisecond per record.

## What is in it
- \`trail-YYYY-MM-DD.jsonl[.gz]\`: one record per line, one file per UTC day.
  Each line starts \`{"seq":N,"prev":"<64 hex>",\`.
- \`anchor.json\`: \`seq\` and \`hash\` of the record just before this range.
- \`checkpoints.jsonl\`: \`{"seq","head","time","sig"}\` signed by the box.
- \`checkpoint-key.pem\`: the box's public checkpoint key (the private key never
  left its HSM). Compare its fingerprint with the one the firm recorded:
  \`openssl pkey -pubin -in checkpoint-key.pem -outform DER | sha256sum\`.
- \`SHA256SUMS\`: checksums of every file (transport integrity only).

## The rules verify.sh checks
1. For each checkpoint, the bytes
   \`statement-gateway audit checkpoint v1\\nseq=<seq>\\nhead=<head>\\ntime=<time>\\n\`
   verify against \`sig\` (base64 of a DER ECDSA signature) with
   \`openssl dgst -sha256 -verify checkpoint-key.pem -signature sig.der payload\`.
2. Reading the trail files in name order (\`gzip -dcf trail-*\`), the first record
   has \`seq\` = anchor seq + 1 and \`prev\` = anchor hash; each following record has
   the next \`seq\` and a \`prev\` equal to the SHA-256 (hex) of the previous line's
   bytes without the newline (\`printf '%s' "$line" | sha256sum\`).
3. Each checkpoint's \`head\` equals that hash of the record with its \`seq\`.

A changed, removed, inserted or reordered line breaks rule 2 at that line. A
trail rewritten and re-hashed from some point on breaks rule 3 at the next
checkpoint, because only the HSM can sign. Records after the last checkpoint
are protected by the chain but not yet by a signature.

## Personal data
Records hold no message content. Recipients appear as \`{"h": HMAC, "m": masked}\`:
the firm can prove a delivery to a given customer by having the box compute the
HMAC of that address (\`npm run audit -- hash <address>\`) and finding it here.
`
