import { appliesAtOnce } from '../config/schema.ts'
import { configDiff } from '../audit/config-change.ts'
import { parseConfig } from '../config/load.ts'
import { html, type Html } from './html.ts'
import { formBody, layout, type Viewer } from './pages.ts'
import type { Routes } from './types.ts'

/**
 * Two things an administrator does around configuration versions (S7, S12):
 * download an encrypted backup for the second site, and restart the box
 * gracefully so that keys which apply only at a start (listen addresses, the
 * HSM, connection limits) take effect. Both need the administrator's
 * authenticator code again, and both are in the audit trail.
 */

/** Keys of the version in force that the running box does not run yet: they wait for a restart. */
export function pendingRestart(running: unknown, inForce: unknown): string[] {
  const d = configDiff(running, parseConfig(inForce ?? {}))
  return d ? Object.keys(d.after).filter((k) => !appliesAtOnce(k) && k !== 'dataDir') : []
}

export function maintenanceSection(v: Viewer, pending: readonly string[], supervised: boolean): Html {
  const hidden = html`<input type="hidden" name="_csrf" value="${v.csrf}" />`
  const code = html`<input name="code" inputmode="numeric" autocomplete="one-time-code" placeholder="authenticator code 驗證碼" required />`
  return html`<h2>Restart 重新啟動</h2>
    ${
      pending.length
        ? html`<p class="notice error">Waiting for a restart 待重新啟動後生效: ${pending.join(', ')}</p>`
        : html`<p>Every key of the version in force is in effect. 目前版本的設定皆已生效。</p>`
    }
    ${
      supervised
        ? html`<form method="post" action="/restart" class="row">
              ${hidden}<input name="reason" placeholder="reason 原因" required />${code}<button>Restart gracefully 安全重新啟動</button>
            </form>
            <p class="hint">
              The box stops taking mail, finishes what is in flight, and its service manager starts it again. 停止收件、完成傳送中郵件後由系統自動重新啟動。
            </p>`
        : html`<p class="hint">
            No service manager runs this box (development): stop it and start it again to restart. 此環境無服務管理程式，請手動重新啟動。
          </p>`
    }
    <p>
      <a href="/system/update">Firmware update 韌體更新</a> · <a href="/system/reset">Factory reset 回復原廠設定</a> (each with two administrators 需兩位管理員)
    </p>
    <h2>Backup for the second site 異地備份</h2>
    <form method="post" action="/config/backup" class="row">
      ${hidden}<input type="password" name="passphrase" placeholder="passphrase (16+) 密語" autocomplete="new-password" required minlength="16" /><input
        type="password"
        name="again"
        placeholder="again 再次輸入"
        autocomplete="new-password"
        required
      />${code}<button>Download backup 下載備份</button>
    </form>
    <p class="hint">
      Versions, the files they name, administrators (hashed) and the HSM labels to check — never a private key. Restore it on the standby with
      <code>npm run config -- restore</code>. 不含私鑰；私鑰以 HSM 廠商備份方式移轉。
    </p>`
}

export function registerMaintenanceRoutes(r: Routes): void {
  const { app, deps: d } = r
  const c = d.changeControl
  const refused = (v: Viewer, text: string) => layout('Configuration 設定', html`<p><a href="/config">Back 返回</a></p>`, v, { kind: 'error', text })

  app.post('/config/backup', { preValidation: r.need(['admin']) }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const b = formBody(req)
    if ((b.passphrase ?? '') !== (b.again ?? '')) return r.page(reply.code(400), refused(v, 'The two passphrases differ. 兩次密語不同。'))
    if (!(await d.accounts.verifyCode(v.user, b.code ?? ''))) return r.page(reply.code(400), refused(v, 'That authenticator code is not right.'))
    let made: { file: string; bundle: Buffer; detail: string }
    try {
      made = await c.backup(b.passphrase ?? '')
    } catch (err) {
      return r.page(reply.code(400), refused(v, (err as Error).message))
    }
    d.events.emit({ type: 'admin.action', who: v.user, via: 'admin-page', action: 'config.backup', target: made.file, outcome: 'ok', detail: made.detail })
    return reply
      .header('content-disposition', `attachment; filename="${made.file}"`)
      .header('cache-control', 'no-store')
      .type('application/octet-stream')
      .send(made.bundle)
  })

  app.post('/restart', { preValidation: r.need(['admin']) }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const b = formBody(req)
    if (!c.restart.supervised) return r.page(reply.code(409), refused(v, 'No service manager would start the box again here.'))
    if (!(b.reason ?? '').trim()) return r.page(reply.code(400), refused(v, 'A reason is needed.'))
    if (!(await d.accounts.verifyCode(v.user, b.code ?? ''))) return r.page(reply.code(400), refused(v, 'That authenticator code is not right.'))
    d.events.emit({ type: 'admin.action', who: v.user, via: 'admin-page', action: 'box.restart', target: undefined, outcome: 'ok', reason: b.reason!.trim() })
    // After this page has gone out: the stop closes this listener too.
    setTimeout(() => c.restart.run(v.user, b.reason!.trim()), 200).unref()
    return r.page(
      reply,
      layout('Restarting 重新啟動中', html`<p>The box is stopping gracefully and will be back in a moment. 系統正在安全重新啟動。</p>`, v, {
        kind: 'ok',
        text: 'Restart requested.',
      }),
    )
  })
}
