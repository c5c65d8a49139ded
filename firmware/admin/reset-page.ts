import { existsSync, readFileSync, rmSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { writeFileAtomic } from '../../hal/storage/files.ts'
import { APPROVED_RESET, type ApprovedReset } from '../control/reset.ts'
import { html } from './html.ts'
import { approvalWindow, formBody, layout, type Viewer, when } from './pages.ts'
import type { Routes } from './types.ts'

/**
 * Factory reset from the admin page (S13, ETSI 5.11), with four eyes (S5): one
 * administrator asks for it — reason, the box's name typed, authenticator
 * code — and another approves it within the hour the same way. The approved
 * reset is written for the service manager, which carries it out as root
 * before the box's next start (`factory-reset.ts --pending`, the unit's
 * ExecStartPre), and the box stops gracefully for that. Without a service
 * manager (development) the page points to `npm run factory-reset`.
 */
const REQUEST = 'admin/factory-reset-request.json'
const VALID_MS = 3_600_000

interface ResetRequest {
  requestedBy: string
  reason: string
  at: number
}

export function registerResetRoutes(r: Routes): void {
  registerResetRequest(r)
  registerResetApproval(r)
}

/** What the routes below share: dataDir, file, pending, expected, supervised, page, check, action. */
function resetHelpers(r: Routes) {
  const { deps: d } = r
  const dataDir = d.config.dataDir
  const file = join(dataDir, REQUEST)
  const pending = (): ResetRequest | undefined => {
    if (!existsSync(file)) return undefined
    const req = JSON.parse(readFileSync(file, 'utf8')) as ResetRequest
    return d.clock.now() - req.at < VALID_MS ? req : undefined
  }
  const expected = `ERASE ${hostname()}`
  const supervised = d.changeControl.restart.supervised

  const page = (v: Viewer, notice?: { kind: 'ok' | 'error'; text: string }) => {
    const p = pending()
    const hidden = html`<input type="hidden" name="_csrf" value="${v.csrf}" />`
    const confirm = html`<input name="confirm" placeholder="${expected}" required autocomplete="off" />`
    const code = html`<input name="code" inputmode="numeric" autocomplete="one-time-code" placeholder="authenticator code 驗證碼" required />`
    return layout(
      'Factory reset 回復原廠設定',
      html`<p class="notice error">
          Every key in the HSM is destroyed; the spool, the ledger, the configuration, the administrators, the TLS material and the secrets are overwritten and
          removed; a signed certificate of deletion is left. It cannot be undone. 所有金鑰與資料將被銷毀，無法復原。
        </p>
        ${
          !supervised
            ? html`<p>No service manager runs this box: use <code>npm run factory-reset</code> on the console. 請於主控台執行。</p>`
            : p
              ? html`<p>Asked by <strong>${p.requestedBy}</strong> at ${when(p.at)}: ${p.reason}</p>
                  ${
                    p.requestedBy === v.user
                      ? html`<p>A second administrator approves it within the hour. 需另一位管理員於一小時內核准。</p>`
                      : html`<form method="post" action="/system/reset/approve" class="row">
                          ${hidden}${confirm}${code}<button>Approve and erase 核准並清除</button>
                        </form>`
                  }
                  <form method="post" action="/system/reset/withdraw" class="inline">${hidden}<button>Withdraw 撤回</button></form>`
              : html`<form method="post" action="/system/reset/request" class="row">
                    ${hidden}<input name="reason" placeholder="reason 原因" required />${confirm}${code}<button>Ask for a factory reset 申請</button>
                  </form>
                  <p class="hint">Type <code>${expected}</code>. A second administrator approves it. 需另一位管理員核准。</p>`
        }`,
      v,
      notice,
    )
  }
  const check = async (v: Viewer, b: Record<string, string | undefined>) => {
    if ((b.confirm ?? '').trim() !== expected) return `Type "${expected}" to confirm.`
    if (!(await d.accounts.verifyCode(v.user, b.code ?? ''))) return 'That authenticator code is not right.'
    return undefined
  }
  const action = (v: Viewer, what: string, reason?: string) =>
    d.events.emit({ type: 'admin.action', who: v.user, via: 'admin-page', action: what, target: hostname(), outcome: 'ok', ...(reason ? { reason } : {}) })
  return { dataDir, file, pending, expected, supervised, page, check, action }
}

/** S12: the factory reset asked for, and withdrawn (a second administrator approves it). */
function registerResetRequest(r: Routes): void {
  const { app, deps: d } = r
  const { file, pending, supervised, page, check, action } = resetHelpers(r)
  app.get('/system/reset', { preValidation: r.need(['admin']) }, async (req, reply) => r.page(reply, page(r.viewer(req, reply)!)))
  app.post('/system/reset/request', { preValidation: r.need(['admin']) }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const b = formBody(req)
    if (!supervised || pending()) return r.page(reply.code(409), page(v, { kind: 'error', text: 'Not now: see above.' }))
    if (!(b.reason ?? '').trim()) return r.page(reply.code(400), page(v, { kind: 'error', text: 'A reason is needed.' }))
    const problem = await check(v, b)
    if (problem) return r.page(reply.code(400), page(v, { kind: 'error', text: problem }))
    writeFileAtomic(file, JSON.stringify({ requestedBy: v.user, reason: b.reason!.trim(), at: d.clock.now() } satisfies ResetRequest), 0o600)
    action(v, 'box.factory-reset.requested', b.reason!.trim())
    return r.page(reply, page(v, { kind: 'ok', text: 'Asked. A second administrator approves it within the hour.' }))
  })
  app.post('/system/reset/withdraw', { preValidation: r.need(['admin']) }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    if (pending()) {
      rmSync(file, { force: true })
      action(v, 'box.factory-reset.withdrawn')
    }
    return r.page(reply, page(v, { kind: 'ok', text: 'No factory reset is asked for.' }))
  })
}

/** S12: the second administrator approves, and the box erases itself. */
function registerResetApproval(r: Routes): void {
  const { app, deps: d } = r
  const { dataDir, file, pending, supervised, page, check, action } = resetHelpers(r)
  app.post('/system/reset/approve', { preValidation: r.need(['admin']) }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const p = pending()
    if (!p || !supervised) return r.page(reply.code(409), page(v, { kind: 'error', text: 'No factory reset is waiting for approval.' }))
    if (p.requestedBy === v.user) return r.page(reply.code(409), page(v, { kind: 'error', text: 'A second administrator approves it, not the one who asked.' }))
    // #31: not by an account the one who asked made or changed.
    const minted = d.accounts.mintedBy(v.user, p.requestedBy, approvalWindow(d, p.at))
    if (minted) {
      action(v, 'box.factory-reset.approval-refused', minted)
      return r.page(reply.code(409), page(v, { kind: 'error', text: minted }))
    }
    const problem = await check(v, formBody(req))
    if (problem) return r.page(reply.code(400), page(v, { kind: 'error', text: problem }))
    const approved: ApprovedReset = { requestedBy: p.requestedBy, approvedBy: v.user, reason: p.reason, approvedAt: new Date(d.clock.now()).toISOString() }
    writeFileAtomic(join(dataDir, APPROVED_RESET), `${JSON.stringify(approved)}\n`, 0o600)
    rmSync(file, { force: true })
    action(v, 'box.factory-reset.approved', p.reason)
    setTimeout(() => d.changeControl.restart.run(v.user, `factory reset asked by ${p.requestedBy}, approved by ${v.user}`), 200).unref()
    return r.page(
      reply,
      layout(
        'Erasing 清除中',
        html`<p>
          The box stops now; the service manager erases it before the next start and leaves the certificate of deletion in the data directory.
          系統即將停止並清除，刪除證明將保留於資料目錄。
        </p>`,
        v,
        { kind: 'ok', text: 'Factory reset approved.' },
      ),
    )
  })
}
