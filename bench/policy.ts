/**
 * The policy's inspection time per message (M1, M12, M13), against the policy
 * of another commit measured in the same run (#32: content sniffing and the
 * Latin reading were to cost at most 10 % over the policy before them).
 *
 *   npm run bench:policy [-- --rounds 5 --seconds 1 --baseline REF]
 *
 * The baseline's firmware/ and hal/ are taken from git (`git archive REF`) into
 * a directory beside this checkout, so they resolve the same node_modules.
 * Both judge the same messages with the shipped defaults of one profile, in the
 * same process, rounds alternating, each message on its own; the medians are
 * compared. The target is judged here: the run fails (exit 1) when any
 * message's ratio is over 1.10.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { parseConfig } from '../firmware/config/load.ts'
import { inspectMessage } from '../firmware/policy/inspect.ts'

/** The policy before #32: what "today's" meant when content sniffing and the Latin reading were added. */
const BEFORE_32 = '2453f406bcecf67b0f5b2c994914d0be0dc3614f'

const { values } = parseArgs({
  options: { rounds: { type: 'string', default: '5' }, seconds: { type: 'string', default: '1' }, baseline: { type: 'string', default: BEFORE_32 } },
})
const rounds = Number(values.rounds)
const seconds = Number(values.seconds)
const REPO = new URL('../', import.meta.url).pathname
const TARGET_RATIO = 1.1

// The baseline's code, from git, beside the checkout.
const baseDir = mkdtempSync(join(REPO, '.bench-baseline-'))
execFileSync('bash', ['-c', `git -C "${REPO}" archive "${values.baseline}" firmware hal | tar -x -C "${baseDir}"`])
const baseline = (await import(join(baseDir, 'firmware/policy/inspect.ts'))) as { inspectMessage: typeof inspectMessage }

const work = mkdtempSync(join(tmpdir(), 'sg-bench-policy-'))
process.on('exit', () => {
  rmSync(baseDir, { recursive: true, force: true })
  rmSync(work, { recursive: true, force: true })
})

/** An encrypted PDF of about `bytes`, made by qpdf (AES-256, as statement generators write them) from a page of random text. */
function encryptedPdf(name: string, bytes: number): Buffer {
  const content = Array.from({ length: Math.ceil(bytes / 60) }, (_, i) => `BT /F1 8 Tf 20 ${i % 780} Td (${randomBytes(16).toString('hex')}) Tj ET`).join('\n')
  const src = join(work, `${name}-src.pdf`)
  writeFileSync(
    src,
    `%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n` +
      `3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >> endobj\n` +
      `4 0 obj << /Length ${content.length} >> stream\n${content}\nendstream endobj\n5 0 obj << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> endobj\n` +
      'trailer << /Root 1 0 R /Size 6 >>\n%%EOF\n',
  )
  const out = join(work, `${name}.pdf`)
  try {
    execFileSync('qpdf', ['--stream-data=uncompress', '--encrypt', 'u', 'o', '256', '--', src, out], { stdio: 'pipe' })
  } catch (err) {
    if ((err as { status: number }).status !== 3) throw err // 3: warnings (the hand-written source has no cross-reference table); written
  }
  return readFileSync(out)
}
const pdfs = { small: encryptedPdf('small', 40_000), large: encryptedPdf('large', 2 << 20) }
const lines = (b: Buffer) => b.toString('base64').replace(/.{76}/g, '$&\r\n')
const head = (type: string) =>
  [
    'From: "Bank Statements" <statements@bank.example>',
    'To: "Wang Da-Ming" <customer@example.net>',
    'Subject: =?UTF-8?B?MjAyNuW5tDEx5pyI5pyJ5YO56K2J5Yi45pyI5bCN5biz5Zau?=',
    'Date: Sun, 22 Nov 2026 10:00:00 +0800',
    'Message-ID: <bench@bank.example>',
    'MIME-Version: 1.0',
    `Content-Type: ${type}`,
    '',
  ].join('\r\n')
/** A MIME part: its header fields, then its body in base64 (or as it is, `raw`). */
const part = (boundary: string, fields: string, body: Buffer, raw = false) =>
  `--${boundary}\r\n${fields}\r\n${raw ? '' : 'Content-Transfer-Encoding: base64\r\n'}\r\n${raw ? body.toString('utf8') : lines(body)}\r\n`
const TEXT = 'Content-Type: text/plain; charset=utf-8'
const zh = '您好，附件為本月有價證券對帳單，帳號 12345678901，金額 NT$12,345。身分證字號 A12****789。\r\n'
const html = `<html><body><table>${`<tr><td>${zh}</td><td>NT$1,234</td></tr>`.repeat(300)}</table></body></html>`
const pdfPart = (boundary: string, pdf: Buffer) =>
  part(boundary, 'Content-Type: application/pdf; name="statement.pdf"\r\nContent-Disposition: attachment; filename="statement.pdf"', pdf)
/** The messages a firm sends, each as its generator writes it. */
const MESSAGES: Record<string, Buffer> = {
  'text + encrypted PDF (60 KB)': Buffer.from(
    `${head('multipart/mixed; boundary="b"')}\r\n${part('b', TEXT, Buffer.from(zh.repeat(400)))}${pdfPart('b', pdfs.small)}--b--\r\n`,
  ),
  'HTML + text alternative, encrypted PDF': Buffer.from(
    `${head('multipart/mixed; boundary="m"')}\r\n--m\r\nContent-Type: multipart/alternative; boundary="a"\r\n\r\n` +
      part('a', TEXT, Buffer.from(zh.repeat(200))) +
      `${part('a', 'Content-Type: text/html; charset=utf-8', Buffer.from(html))}--a--\r\n${pdfPart('m', pdfs.small)}--m--\r\n`,
  ),
  'a 2 MiB encrypted PDF': Buffer.from(
    `${head('multipart/mixed; boundary="b"')}\r\n${part('b', TEXT, Buffer.from('hello'), true)}${pdfPart('b', pdfs.large)}--b--\r\n`,
  ),
}
const profiles = parseConfig({ dataDir: work, policy: { profiles: [{ name: 'securities', accounts: ['statements'], domains: ['bank.example'] }] } }).policy
  .profiles
const req = (message: Buffer) => ({ message, account: 'statements', mailFrom: 'statements@bank.example' })

// Both must judge these the same (all accepted): a benchmark of a policy that refuses them measures nothing.
for (const [name, m] of Object.entries(MESSAGES)) {
  const now = inspectMessage(req(m), profiles).hits
  const then = baseline.inspectMessage(req(m), profiles).hits
  if (now.length || then.length) throw new Error(`${name}: not accepted (now ${JSON.stringify(now)}, baseline ${JSON.stringify(then)})`)
}

/** Microseconds per inspection of `m`, inspecting it for `seconds`. */
function measure(inspect: typeof inspectMessage, m: Buffer): number {
  let n = 0
  const start = process.hrtime.bigint()
  const until = start + BigInt(seconds * 1e9)
  while (process.hrtime.bigint() < until) {
    inspect(req(m), profiles)
    n++
  }
  return Number(process.hrtime.bigint() - start) / 1e3 / n
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const rows: Record<string, { bytes: number; microseconds: number; baselineMicroseconds: number; ratio: number; result: string }> = {}
for (const [name, m] of Object.entries(MESSAGES)) {
  measure(inspectMessage, m) // warm up both
  measure(baseline.inspectMessage, m)
  const now: number[] = []
  const then: number[] = []
  for (let r = 0; r < rounds; r++) {
    then.push(measure(baseline.inspectMessage, m))
    now.push(measure(inspectMessage, m))
  }
  const ratio = median(now) / median(then)
  rows[name] = {
    bytes: m.length,
    microseconds: Math.round(median(now)),
    baselineMicroseconds: Math.round(median(then)),
    ratio: Number(ratio.toFixed(3)),
    result: ratio <= TARGET_RATIO ? 'pass' : 'FAIL',
  }
}
const pass = Object.values(rows).every((r) => r.result === 'pass')
const summary = {
  date: new Date().toISOString(),
  machine: `${cpus().length} cores, ${cpus()[0]?.model}`,
  load: loadavg().map((l) => Number(l.toFixed(2))),
  node: process.version,
  baseline: values.baseline,
  rounds,
  secondsPerRound: seconds,
  messages: rows,
  target: `each message: ratio ≤ ${TARGET_RATIO}`,
  result: pass ? 'pass' : 'FAIL',
}
process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`)
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true })
writeFileSync(join(import.meta.dirname, 'results', 'policy.json'), `${JSON.stringify(summary, null, 2)}\n`)
if (!pass) process.exitCode = 1
