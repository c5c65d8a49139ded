import { localTimeFormatter } from '../ledger/export.ts'
import { unmatchedReports } from '../ledger/unmatched.ts'
import { html } from './html.ts'
import { layout, table } from './pages.ts'
import type { RecordDeps, Routes } from './types.ts'

/**
 * Unmatched reports 未比對回報 (#30, M8): bounces and read receipts that came
 * back without a token, which the box never ties to a statement by itself
 * (DESIGN "only authenticated evidence decides"). A person sees what each
 * said and the statement its Message-ID points to, as a hint; there is no
 * button that applies one.
 */
export function registerUnmatchedRoutes(r: Routes, rec: RecordDeps): void {
  const { app, deps: d } = r
  const local = localTimeFormatter(d.config.reports.timeZone)
  app.get('/reports/unmatched', { preValidation: r.need(['admin', 'auditor']) }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const store = rec.ledger()
    if (!store) return r.page(reply, layout('Unmatched reports 未比對回報', html`<p class="notice error">The ledger is off (reports.enabled).</p>`, v))
    const rows = await unmatchedReports(store, { limit: 200 })
    d.events.emit({ type: 'admin.action', who: v.user, via: 'admin-page', action: 'reports.unmatched', target: '', outcome: 'ok' })
    return r.page(
      reply,
      layout(
        'Unmatched reports 未比對回報',
        html`<p>
            Reports that came back without a token (to postmaster, or another address), newest first, times in ${d.config.reports.timeZone}. They change no
            statement: a report decides only when it carries the token the box gave the statement. 無識別碼之回報不會改變任何帳單狀態，僅供人工查閱。
          </p>
          ${table(
            ['Time 時間', 'From 來源', 'Kind 種類', 'Status 狀態碼', 'Category 類別', 'Text 內容 (masked)', 'Points to 可能相關帳單'],
            rows.map((u) => [
              local(u.at),
              u.client,
              u.kind,
              u.status,
              u.category,
              u.reply,
              u.hintQueueId ? html`<a href="/queue/${u.hintQueueId}">${u.hintStatementId ?? u.hintQueueId}</a>` : '',
            ]),
            'No unmatched reports. 無未比對回報。',
          )}`,
        v,
      ),
    )
  })
}
