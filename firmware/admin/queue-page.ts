import type { ControlReply } from '../control/server.ts'
import { boxIdOf } from '../ledger/ledger.ts'
import { mailHistory, queueFacts, queueIdsOf, type QueueFacts, type RecipientHistory } from '../ledger/queries.ts'
import { SPOOL_STATES } from '../spool/types.ts'
import { ROLES, type Role } from './accounts.ts'
import { html, type Html } from './html.ts'
import { formBody, layout, table, type Viewer } from './pages.ts'
import type { Routes } from './types.ts'
import { IdActionParams, IdParams, QueueQuery } from './schemas.ts'

/**
 * The admin page's queue (S6, M9): the spool's list by state with what the
 * ledger knows of each mail, a search by statement id or recipient, one
 * mail's facts and history, and its actions — all through the control
 * socket's queue service, never a second implementation. Addresses are
 * shown masked; a recipient searched for is looked up by its HMAC.
 */

/** Mails on one page of the queue list. */
const QUEUE_PAGE = 100
/** Mails a search lists at most. */
const SEARCH_LIMIT = 100
const ALL: readonly Role[] = ROLES

export function registerQueueRoutes(r: Routes): void {
  const { app, deps: d } = r
  const box = boxIdOf(d.config)

  app.get('/queue', { preValidation: r.need(ALL), schema: { querystring: QueueQuery } }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const q = req.query
    const summary = await d.control.request({ cmd: 'queue.summary', who: v.user }, 'admin-page')
    const store = d.records.ledger()
    const statement = (q.statement ?? '').trim()
    const recipient = (q.recipient ?? '').trim()
    if (statement || recipient) {
      // Found in the ledger (the statement id, or the recipient's HMAC: never an address in clear), then shown as the queue has them.
      let list: ControlReply = { ok: false, error: 'Finding a mail needs the ledger (reports.enabled). 需啟用帳單帳本。' }
      let ids: string[] = []
      // The recipient's HMAC is made in the HSM: while it is away, a search by address cannot be made.
      const recipientHash = recipient ? await d.recipientHash(recipient).catch(() => undefined) : undefined
      if (recipient && !recipientHash) list = { ok: false, error: 'The HSM is not answering: a recipient cannot be looked up now. HSM 無回應。' }
      else if (store) {
        ids = await queueIdsOf(store, box, { statementId: statement || undefined, recipientHash }, SEARCH_LIMIT)
        const shown = await Promise.all(ids.map((id) => d.control.request({ cmd: 'queue.show', args: { id }, who: v.user }, 'admin-page')))
        list = { ok: true, result: shown.filter((s) => s.ok).map((s) => s.result) }
      }
      d.events.emit({
        type: 'admin.action',
        who: v.user,
        via: 'admin-page',
        action: 'queue.search',
        target: statement || 'recipient',
        outcome: list.ok ? 'ok' : 'refused',
      })
      const inQueue = list.ok ? (list.result as unknown[]).length : 0
      const facts = store ? await queueFacts(store, box, ids).catch(() => undefined) : undefined
      return r.page(reply, queueListPage(v, list, summary, undefined, 1, QUEUE_PAGE, facts, { statement, recipient, notInQueue: ids.length - inQueue }))
    }
    const page = Math.max(1, Math.min(1_000_000, Number.parseInt(q.page ?? '1', 10) || 1))
    const args = { limit: QUEUE_PAGE, offset: (page - 1) * QUEUE_PAGE, ...(q.state ? { state: q.state } : {}) }
    const list = await d.control.request({ cmd: 'queue.list', args, who: v.user }, 'admin-page')
    // The spool's list is its index (nothing decrypted); the ledger adds the statement, account, masked recipient and last reply.
    const ids = list.ok ? (list.result as { id: string }[]).map((m) => m.id) : []
    const facts = store ? await queueFacts(store, box, ids).catch(() => undefined) : undefined
    return r.page(reply, queueListPage(v, list, summary, q.state, page, QUEUE_PAGE, facts))
  })

  /** One mail's history as the ledger has followed it (M9): every recipient's steps, addresses masked. */
  const historyOf = async (id: string) => {
    const store = d.records.ledger()
    return store ? mailHistory(store, box, id).catch(() => undefined) : undefined
  }
  app.get('/queue/:id', { preValidation: r.need(ALL), schema: { params: IdParams } }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const { id } = req.params
    const shown = await d.control.request({ cmd: 'queue.show', args: { id }, who: v.user }, 'admin-page')
    return r.page(reply, queueMailPage(v, id, shown, undefined, await historyOf(id)))
  })
  app.post('/queue/:id/:action', { preValidation: r.need(['admin', 'operator']), schema: { params: IdActionParams } }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const { id, action } = req.params
    if (!['hold', 'release', 'retry', 'remove'].includes(action)) return reply.code(404).send('no such action\n')
    const res = await d.control.request({ cmd: `queue.${action}`, args: { id, reason: formBody(req).reason }, who: v.user }, 'admin-page')
    const shown = action === 'remove' && res.ok ? res : await d.control.request({ cmd: 'queue.show', args: { id }, who: v.user }, 'admin-page')
    const notice = res.ok ? { kind: 'ok' as const, text: `${action}: done 完成` } : { kind: 'error' as const, text: res.error }
    return r.page(reply.code(res.ok ? 200 : 409), queueMailPage(v, id, shown, notice, await historyOf(id)))
  })
}

export function queueListPage(
  v: Viewer,
  list: ControlReply,
  summary: ControlReply,
  state: string | undefined,
  page: number,
  perPage: number,
  facts?: ReadonlyMap<string, QueueFacts>,
  search?: { statement: string; recipient: string; notInQueue: number },
): Html {
  const counts = summary.ok ? (summary.result as Record<string, number>) : {}
  const rows = list.ok
    ? (list.result as { id: string; state: string; attempts: number; created: string; nextAttemptAt?: string }[]).map((m) => {
        const f = facts?.get(m.id)
        return [
          html`<a href="/queue/${m.id}">${m.id}</a>`,
          f?.statementId ?? '—',
          f?.account ?? '—',
          f?.recipient ? (f.recipients > 1 ? `${f.recipient} +${f.recipients - 1}` : f.recipient) : '—',
          m.state,
          m.attempts,
          m.created.replace('T', ' ').slice(0, 19),
          m.nextAttemptAt ? m.nextAttemptAt.replace('T', ' ').slice(0, 19) : '—',
          f?.lastReply ? html`<span class="reply">${f.lastReply.slice(0, 160)}</span>` : '',
        ]
      })
    : []
  return layout(
    'Queue 佇列',
    html`<p class="filters">
        <a href="/queue">all 全部 (${counts.total ?? 0})</a>${SPOOL_STATES.map(
          (s) => html` · <a href="/queue?state=${s}" ${s === state ? html` class="current"` : ''}>${s} (${counts[s] ?? 0})</a>`,
        )}
      </p>
      <form method="get" action="/queue" class="row">
        <label>Statement id 帳單編號 <input name="statement" value="${search?.statement ?? ''}" /></label>
        <label>Recipient 收件者 <input name="recipient" value="${search?.recipient ?? ''}" /></label>
        <button>Find 搜尋</button>
      </form>
      ${list.ok ? '' : html`<p class="notice error">${list.error}</p>`}
      ${table(
        [
          'Queue id',
          'Statement 帳單',
          'Account 帳號',
          'Recipient 收件者',
          'State 狀態',
          'Attempts 次數',
          'Received 收件 (UTC)',
          'Next attempt 下次',
          'Last reply 最後回應',
        ],
        rows,
        'The queue is empty. 佇列為空。',
      )}
      ${
        search
          ? html`<p class="hint">
              ${rows.length} in the queue${search.notInQueue ? html`; ${search.notInQueue} more no longer in it (see Reports 報表)` : ''}. 搜尋結果。
            </p>`
          : pager(counts, state, page, perPage, rows.length)
      }
      <p class="hint">In the queue's own order; addresses are masked. 收件者位址已遮罩。</p>`,
    v,
  )
}

export function queueMailPage(
  v: Viewer,
  id: string,
  shown: ControlReply,
  notice?: { kind: 'ok' | 'error'; text: string },
  history?: readonly RecipientHistory[],
): Html {
  if (!shown.ok)
    return layout(
      `Mail ${id}`,
      html`<p class="notice error">${shown.error}</p>
        <p><a href="/queue">Back to the queue</a></p>`,
      v,
      notice,
    )
  const m = shown.result as Record<string, unknown> & { recipients?: { address: string; state: string }[] }
  if (m.state === 'removed')
    return layout(
      `Mail ${id}`,
      html`<p>Removed from the queue; the firm is told. 已移除。</p>
        <p><a href="/queue">Back</a></p>`,
      v,
      notice,
    )
  const canAct = v.role === 'admin' || v.role === 'operator'
  const act = (action: string, label: string, reason = false) =>
    html`<form method="post" action="/queue/${id}/${action}" class="inline">
      <input type="hidden" name="_csrf" value="${v.csrf}" />${
        reason ? html`<input name="reason" placeholder="reason (the firm is told) 原因" required maxlength="200" />` : ''
      }<button>${label}</button>
    </form>`
  const fields: [string, unknown][] = [
    ['State 狀態', m.state],
    ['Statement id 帳單編號', m.statementId ?? '—'],
    ['Class 類別', m.statementClass ?? '—'],
    ['Account 帳號', m.account ?? '—'],
    ['From 寄件者', m.from],
    ['Received 收件時間', m.receivedAt],
    ['Attempts 嘗試次數', m.attempts],
    ['Next attempt 下次嘗試', m.nextAttemptAt ?? '—'],
    ['Size 大小', `${String(m.bytes)} bytes`],
  ]
  return layout(
    `Mail ${id}`,
    html`${table(['', ''], fields)}
      <h2>Recipients 收件者</h2>
      ${table(
        ['Address (masked)', 'State'],
        (m.recipients ?? []).map((r) => [r.address, r.state]),
      )}
      ${
        canAct
          ? html`<h2>Actions 動作</h2>
              <div class="actions">
                ${act('hold', 'Hold 暫停')}${act('release', 'Release 放行')}${act('retry', 'Retry now 立即重試')}${act('remove', 'Remove 移除', true)}
              </div>`
          : ''
      }
      ${
        history?.length
          ? html`<h2>History 歷程</h2>
              ${table(['Recipient 收件者', 'Time 時間 (UTC)', 'Event 事件', 'Detail 說明'], historyRows(history))}`
          : ''
      }
      <p>
        ${v.role === 'admin' || v.role === 'auditor' ? html`<a href="/audit?id=${id}">Its audit records 稽核紀錄</a> · ` : ''}<a href="/queue"
          >Back to the queue 返回佇列</a
        >
      </p>`,
    v,
    notice,
  )
}

/** A mail's history from the ledger, one row per step of each recipient, in time order (M9). */
export function historyRows(history: readonly RecipientHistory[]): unknown[][] {
  const when = (ms: number) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19)
  const rows: [number, unknown[]][] = []
  for (const h of history) {
    const step = (at: number | null, event: string, detail: unknown = '') => {
      if (at !== null) rows.push([at, [h.recipient, when(at), event, detail]])
    }
    step(h.acceptedAt, 'accepted 收件')
    if (h.deferrals > 0) rows.push([h.acceptedAt + 1, [h.recipient, '', `deferred ×${h.deferrals} 延遲`, h.lastReply ?? '']])
    step(h.deliveredAt, 'delivered 送達', [h.mx, h.sourceIp && `from ${h.sourceIp}`, h.tls].filter(Boolean).join(' · '))
    step(h.bouncedAt, 'bounced 退信', h.bounceReason ?? '')
    step(h.expiredAt, 'expired 逾期')
    step(h.removedAt, 'removed 移除')
    step(h.readAt, 'read 已讀')
    step(h.paperOwedAt, 'paper owed 需寄紙本', h.paperReason ?? '')
  }
  return rows.sort((a, b) => a[0] - b[0]).map(([, r]) => r)
}

function pager(counts: Record<string, number>, state: string | undefined, page: number, perPage: number, shown: number): Html {
  const total = state ? (counts[state] ?? 0) : (counts.total ?? 0)
  const pages = Math.max(1, Math.ceil(total / perPage))
  const link = (p: number, label: string) => html`<a href="/queue?${state ? html`state=${state}&amp;` : ''}page=${p}">${label}</a>`
  const from = shown ? (page - 1) * perPage + 1 : 0
  return html`<p class="pager">
    ${page > 1 ? link(page - 1, '← Previous 上一頁') : ''} ${from}–${from + Math.max(shown - 1, 0)} of ${total} (page ${page} of ${pages})
    ${page < pages ? link(page + 1, 'Next 下一頁 →') : ''}
  </p>`
}
