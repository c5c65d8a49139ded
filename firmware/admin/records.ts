import { spawn } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { exportTrail } from '../audit/export.ts'
import { verifyTrail, type VerifyResult } from '../audit/verify.ts'
import { csvField, localTimeFormatter, paperCells } from '../ledger/export.ts'
import { dayFormatter } from '../ledger/ledger.ts'
import { PAPER_FIELDS, paperOwedRows, summary } from '../ledger/queries.ts'
import { html } from './html.ts'
import { layout, table, type Viewer } from './pages.ts'
import type { RecordDeps, Routes } from './types.ts'
import { MonthQuery, RangeQuery } from './schemas.ts'

/**
 * The admin page's records: the ledger's reports and paper-owed list (M8,
 * M9, M11), the keys and certificates (read-only), and the audit trail's
 * chain verification and export for auditors (S6). Each is the same code
 * the CLI tools run.
 */

interface VerifyState {
  by: string
  startedAt: number
  records: number
  result?: VerifyResult
  error?: string
  finishedAt?: number
}

const MONTH = /^\d{4}-(0[1-9]|1[0-2])$/
const DAY = /^\d{4}-\d{2}-\d{2}$/
const PAGE_ROWS = 500

export function registerRecordRoutes(r: Routes, rec: RecordDeps): void {
  registerReportRoutes(r, rec)
  registerPaperRoutes(r, rec)
  registerCertificateRoutes(r, rec)
  registerAuditRecordRoutes(r, rec)
}

/** What the routes below share: tz, local, today. */
function recordHelpers(r: Routes) {
  const { deps: d } = r
  const tz = d.config.reports.timeZone
  const local = localTimeFormatter(tz)
  const today = dayFormatter(tz)
  return { tz, local, today }
}

/** M9: the ledger's summary, by day, batch, account or class. */
function registerReportRoutes(r: Routes, rec: RecordDeps): void {
  const { app, deps: d } = r
  const { today } = recordHelpers(r)
  app.get('/reports', { preValidation: r.need(['admin', 'operator', 'auditor']), schema: { querystring: RangeQuery } }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const store = rec.ledger()
    if (!store) return r.page(reply, layout('Reports 報表', html`<p class="notice error">The ledger is off (reports.enabled).</p>`, v))
    const q = req.query
    // The ledger's days are the firm's (reports.timeZone): from 00:00 to 08:00 in Taipei the UTC date is yesterday's.
    const to = q.to && DAY.test(q.to) ? q.to : today(d.clock.now())
    const from = q.from && DAY.test(q.from) ? q.from : new Date(Date.parse(to) - 13 * 86_400_000).toISOString().slice(0, 10)
    const rows = await summary(store, { from, to }, ['day'])
    const month = to.slice(0, 7)
    return r.page(
      reply,
      layout(
        'Reports 報表',
        html`<form method="get" action="/reports" class="row">
            <label>From 起 <input name="from" value="${from}" /></label><label>To 迄 <input name="to" value="${to}" /></label><button>Show 顯示</button>
          </form>
          ${table(
            ['Day 日期', 'Submitted 收件', 'Delivered 送達', 'Bounced 退信', 'Expired 逾期', 'Pending 處理中', 'Read 已讀', 'Paper owed 需寄紙本'],
            rows.map((s) => [s.day, s.submitted, s.delivered, s.bouncedHard + s.bouncedSoft, s.expired, s.pending, s.read, s.paperOwed]),
            'No statements in these days. 此期間無帳單。',
          )}
          <p><a href="/reports/paper?month=${month}">Paper-owed list for ${month} 需寄紙本清單</a></p>
          ${v.role === 'operator' ? '' : html`<p><a href="/reports/unmatched">Unmatched reports 未比對回報</a></p>`}`,
        v,
      ),
    )
  })
}

/** M8, M11: the paper-owed list for a month, on the page and as CSV. */
function registerPaperRoutes(r: Routes, rec: RecordDeps): void {
  const { app, deps: d } = r
  const { tz, local } = recordHelpers(r)
  app.get('/reports/paper', { preValidation: r.need(['admin', 'operator', 'auditor']), schema: { querystring: MonthQuery } }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const store = rec.ledger()
    const month = req.query.month ?? ''
    if (!store || !MONTH.test(month)) return reply.code(400).send('a month (YYYY-MM) is needed, and the ledger must be on\n')
    const rows: string[][] = []
    let total = 0
    for await (const batch of paperOwedRows(store, month))
      for (const row of batch) {
        if (rows.length < PAGE_ROWS) rows.push(paperCells(row, local))
        total++
      }
    d.events.emit({ type: 'admin.action', who: v.user, via: 'admin-page', action: 'reports.paper', target: month, outcome: 'ok' })
    const col = (k: (typeof PAPER_FIELDS)[number]) => PAPER_FIELDS.indexOf(k)
    return r.page(
      reply,
      layout(
        `Paper owed, ${month} 需寄紙本`,
        html`<p>
            ${total} recipient(s) of statements submitted in ${month} are owed a paper statement (times in ${tz}).
            <a href="/reports/paper.csv?month=${month}">Download CSV 下載</a>
          </p>
          ${table(
            ['Account', 'Statement id', 'Recipient (masked)', 'Reason 原因', 'Delivered', 'Failed', 'Owed since'],
            rows.map((c) => [
              c[col('account')],
              c[col('statement_id')],
              c[col('recipient')],
              c[col('reason')],
              c[col('delivered_at')],
              c[col('failed_at')],
              c[col('paper_owed_at')],
            ]),
            'Nobody is owed paper for this month. 本月無需寄紙本。',
          )}
          ${total > PAGE_ROWS ? html`<p class="hint">The first ${PAGE_ROWS} are shown; the CSV has all ${total}.</p>` : ''}`,
        v,
      ),
    )
  })

  app.get('/reports/paper.csv', { preValidation: r.need(['admin', 'operator', 'auditor']), schema: { querystring: MonthQuery } }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const store = rec.ledger()
    const month = req.query.month ?? ''
    if (!store || !MONTH.test(month)) return reply.code(400).send('a month (YYYY-MM) is needed, and the ledger must be on\n')
    d.events.emit({ type: 'admin.action', who: v.user, via: 'admin-page', action: 'reports.paper', target: month, outcome: 'ok', detail: 'csv' })
    // A BOM so Excel in Taiwan reads it as UTF-8.
    let csv = `\ufeff${PAPER_FIELDS.join(',')}\r\n`
    for await (const batch of paperOwedRows(store, month)) for (const row of batch) csv += `${paperCells(row, local).map(csvField).join(',')}\r\n`
    return reply.type('text/csv; charset=utf-8').header('content-disposition', `attachment; filename="paper-owed-${month}.csv"`).send(csv)
  })
}

/** S11: the certificates the box signs and serves with, and when they expire. */
function registerCertificateRoutes(r: Routes, rec: RecordDeps): void {
  const { app, deps: d } = r
  app.get('/certificates', { preValidation: r.need(['admin', 'operator', 'auditor']) }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const status = await d.control.request({ cmd: 'box.status', who: v.user }, 'admin-page')
    const hsm = (status.ok ? (status.result as { hsm?: HsmView }).hsm : undefined) ?? {}
    const tls = new X509Certificate(rec.tlsCertificate())
    const days = (notAfter: string) => Math.floor((Date.parse(notAfter) - d.clock.now()) / 86_400_000)
    return r.page(
      reply,
      layout(
        'Keys and certificates 金鑰與憑證',
        html`<h2>HSM ${hsm.token ? `${hsm.token.label} (${hsm.token.manufacturer} ${hsm.token.model})` : ''}</h2>
          ${table(
            ['Key 金鑰', 'Purpose 用途', 'Present 存在'],
            (hsm.keys ?? []).map((k) => [k.label, k.purpose, k.present ? 'yes' : 'MISSING']),
          )}
          <h2>Certificates 憑證</h2>
          ${table(
            ['Label', 'Subject', 'Serial', 'Expires 到期', 'Days left 剩餘天數'],
            [
              ...(hsm.certificates ?? []).map((c) => [c.label, c.subject, c.serial, c.notAfter, c.daysLeft]),
              ['TLS (submission, admin page)', tls.subject.replace(/\n/g, ', '), tls.serialNumber, tls.validTo, days(tls.validTo)],
            ],
          )}`,
        v,
      ),
    )
  })
}

/** S6: the trail verified from the page, and exported for the auditor. */
function registerAuditRecordRoutes(r: Routes, rec: RecordDeps): void {
  const { app, deps: d } = r
  const { local } = recordHelpers(r)
  // S6: the chain verified from the page, in the background; the last result is kept and shown.
  let verify: VerifyState | undefined
  app.get('/audit/verify', { preValidation: r.need(['admin', 'auditor']) }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    return r.page(reply, layout('Audit chain 稽核鏈驗證', verifyView(v, verify, local), v))
  })
  app.post('/audit/verify', { preValidation: r.need(['admin', 'auditor']) }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    if (!verify || verify.finishedAt !== undefined) {
      const state: VerifyState = { by: v.user, startedAt: d.clock.now(), records: 0 }
      verify = state
      d.events.emit({ type: 'admin.action', who: v.user, via: 'admin-page', action: 'audit.verify', target: undefined, outcome: 'ok' })
      void rec
        .checkpointKey()
        .then((key) => verifyTrail(d.auditDir, key, { onProgress: (n) => (state.records = n) }))
        .then(
          (result) => ((state.result = result), (state.records = result.records)),
          (err: unknown) => (state.error = (err as Error).message),
        )
        .finally(() => (state.finishedAt = d.clock.now()))
    }
    return reply.redirect('/audit/verify', 303)
  })

  // S6: the auditor takes the trail away as a bundle they verify without the box (verify.sh inside).
  app.get('/audit/export', { preValidation: r.need(['auditor']), schema: { querystring: RangeQuery } }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const q = req.query
    const range = { from: q.from && DAY.test(q.from) ? q.from : undefined, to: q.to && DAY.test(q.to) ? q.to : undefined }
    const tmp = await mkdtemp(join(d.config.dataDir, 'tmp-audit-export-'))
    const name = `audit-${range.from ?? 'start'}-to-${range.to ?? 'now'}`
    try {
      const result = await exportTrail(d.auditDir, join(tmp, name), range)
      d.events.emit({
        type: 'admin.action',
        who: v.user,
        via: 'admin-page',
        action: 'audit.export',
        target: name,
        outcome: 'ok',
        detail: `${result.records} records`,
      })
    } catch (err) {
      await rm(tmp, { recursive: true, force: true })
      d.events.emit({
        type: 'admin.action',
        who: v.user,
        via: 'admin-page',
        action: 'audit.export',
        target: name,
        outcome: 'refused',
        reason: (err as Error).message,
      })
      return reply
        .code(400)
        .type('text/plain; charset=utf-8')
        .send(`${(err as Error).message}\n`)
    }
    const tar = spawn('tar', ['-czf', '-', '-C', tmp, name], { stdio: ['ignore', 'pipe', 'ignore'] })
    tar.on('close', () => void rm(tmp, { recursive: true, force: true }))
    return reply.type('application/gzip').header('content-disposition', `attachment; filename="${name}.tar.gz"`).send(tar.stdout)
  })
}

interface HsmView {
  token?: { label: string; manufacturer: string; model: string }
  keys?: { label: string; purpose: string; present: boolean }[]
  certificates?: { label: string; subject: string; serial: string; notAfter: string; daysLeft: number }[]
}

function verifyView(v: Viewer, s: VerifyState | undefined, local: (ms: number) => string) {
  const run = html`<form method="post" action="/audit/verify">
    <input type="hidden" name="_csrf" value="${v.csrf}" /><button>Verify the chain now 立即驗證</button>
  </form>`
  if (!s)
    return html`<p>Not verified from this page since the box started. 本次啟動後尚未驗證。</p>
      ${run}`
  if (s.finishedAt === undefined)
    return html`<p class="notice ok" role="status">
      Verifying… ${s.records.toLocaleString('en')} records checked (started by ${s.by} at ${local(s.startedAt)}). Reload to follow. 驗證中，請重新整理。
    </p>`
  const r = s.result
  const outcome = s.error
    ? html`<p class="notice error">Could not verify: ${s.error}</p>`
    : r?.ok
      ? html`<p class="notice ok">
          OK: ${r.records.toLocaleString('en')} records, seq ${r.firstSeq ?? '-'}–${r.lastSeq ?? '-'}, ${r.checkpoints} signed checkpoints, covered to seq
          ${r.coveredTo}. 驗證通過。
        </p>`
      : html`<p class="notice error">FAIL: record ${r?.problem?.seq} (${r?.problem?.file} line ${r?.problem?.line}): ${r?.problem?.reason}. 驗證失敗。</p>`
  return html`<p>Last verification: started by ${s.by} at ${local(s.startedAt)}, finished ${local(s.finishedAt)}.</p>
    ${outcome}${run}`
}
