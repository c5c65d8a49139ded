import { html, type Html } from './html.ts'
import type { Role, UserView } from './accounts.ts'

/**
 * The admin page's HTML: one layout, and a function per page. Values are
 * escaped by `html`; the only script is /static/app.js (CSP `script-src
 * 'self'`, no inline script), the only style /static/app.css.
 */
/** A form's fields as posted (formbody), or none when the request carried no form. */
/**
 * #31: since when a change to the approver's account by the proposer disqualifies the approval:
 * the proposal's creation or one proposal lifetime (`admin.proposalExpiryHours`) ago, whichever is earlier.
 */
export function approvalWindow(d: { config: { admin: { proposalExpiryHours: number } }; clock: { now(): number } }, proposedAt: number): number {
  return Math.min(proposedAt, d.clock.now() - d.config.admin.proposalExpiryHours * 3_600_000)
}

/**
 * A form's fields (application/x-www-form-urlencoded), each one string. A field sent twice
 * arrives as an array, which no form of the page sends: it counts as not given, never as a
 * string to a handler (#34).
 */
export function formBody(req: { body: unknown }): Record<string, string | undefined> {
  if (!req.body || typeof req.body !== 'object') return {}
  return Object.fromEntries(Object.entries(req.body).filter((e): e is [string, string] => typeof e[1] === 'string'))
}

export interface Viewer {
  user: string
  role: Role
  csrf: string
}

const NAV: [string, string, readonly Role[]][] = [
  ['/dashboard', 'Dashboard 儀表板', ['admin', 'operator', 'auditor']],
  ['/queue', 'Queue 佇列', ['admin', 'operator', 'auditor']],
  ['/reports', 'Reports 報表', ['admin', 'operator', 'auditor']],
  ['/reports/unmatched', 'Unmatched reports 未比對回報', ['admin', 'auditor']],
  ['/audit', 'Audit 稽核', ['admin', 'auditor']],
  ['/logins', 'Failed logins 登入失敗', ['admin', 'auditor']],
  ['/users', 'Users 使用者', ['admin']],
  ['/config', 'Configuration 設定', ['admin']],
  ['/certificates', 'Certificates 憑證', ['admin', 'operator', 'auditor']],
  ['/account', 'My account 我的帳號', ['admin', 'operator', 'auditor']],
]

export function layout(title: string, body: Html, viewer?: Viewer, notice?: { kind: 'ok' | 'error'; text: string }): Html {
  return html`<!doctype html>
    <html lang="zh-Hant">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${title} · Statement Gateway</title>
        <link rel="stylesheet" href="/static/app.css" />
        <link rel="stylesheet" href="/static/uPlot.min.css" />
        <script src="/static/uPlot.iife.min.js" defer></script>
        <script src="/static/app.js" defer></script>
      </head>
      <body>
        <header>
          <span class="brand">Statement Gateway 電子帳單閘道</span>
          ${
            viewer
              ? html`<nav>${NAV.filter(([, , roles]) => roles.includes(viewer.role)).map(([href, label]) => html`<a href="${href}">${label}</a>`)}</nav>
                  <form method="post" action="/logout" class="logout">
                    <input type="hidden" name="_csrf" value="${viewer.csrf}" /><span class="who">${viewer.user} (${viewer.role})</span>
                    <button>Log out 登出</button>
                  </form>`
              : ''
          }
        </header>
        <main>
          <h1>${title}</h1>
          ${notice ? html`<p class="notice ${notice.kind}" role="${notice.kind === 'error' ? 'alert' : 'status'}">${notice.text}</p>` : ''} ${body}
        </main>
      </body>
    </html>`
}

export function setupPage(csrf: string, error?: string): Html {
  return layout(
    'First administrator 建立第一位管理員',
    html`<p>
        Enter the one-time setup code the box printed when it started (also in <code>&lt;dataDir&gt;/admin/setup-code</code>), then choose the first
        administrator's name and password. 請輸入設備啟動時顯示的一次性設定碼。
      </p>
      <form method="post" action="/setup" class="stack">
        <input type="hidden" name="_csrf" value="${csrf}" />
        <label>Setup code 設定碼 <input name="code" autocomplete="off" required /></label>
        <label>Name 帳號 <input name="name" autocomplete="username" required pattern="[a-z][a-z0-9._\\-]{1,31}" /></label>
        <label>Password 密碼 <input name="password" type="password" autocomplete="new-password" required minlength="12" /></label>
        <p class="hint">At least 12 characters with letters, digits and symbols. 至少 12 個字元，含字母、數字與符號。</p>
        <button>Continue 繼續</button>
      </form>`,
    undefined,
    error ? { kind: 'error', text: error } : undefined,
  )
}

export function loginPage(csrf: string, error?: string, info?: string): Html {
  return layout(
    'Log in 登入',
    html`<form method="post" action="/login" class="stack">
      <input type="hidden" name="_csrf" value="${csrf}" />
      <label>Name 帳號 <input name="name" autocomplete="username" required /></label>
      <label>Password 密碼 <input name="password" type="password" autocomplete="current-password" required /></label>
      <label>Authenticator code or recovery code 驗證碼 <input name="code" autocomplete="one-time-code" inputmode="numeric" /></label>
      <button>Log in 登入</button>
    </form>`,
    undefined,
    error ? { kind: 'error', text: error } : info ? { kind: 'ok', text: info } : undefined,
  )
}

export function enrolPage(csrf: string, name: string, qrSvg: Html, secret: string, error?: string): Html {
  return layout(
    'Two-step verification 兩步驟驗證',
    html`<p>
        Scan this code with an authenticator app (or type the key), then enter the 6-digit code it shows for <strong>${name}</strong>. 請以驗證器 App
        掃描，並輸入顯示的 6 位數字。
      </p>
      <div class="qr">${qrSvg}</div>
      <p>Key 金鑰: <code class="secret">${secret}</code></p>
      <form method="post" action="/enrol" class="stack">
        <input type="hidden" name="_csrf" value="${csrf}" />
        <label>Code 驗證碼 <input name="code" autocomplete="one-time-code" inputmode="numeric" required /></label>
        <button>Confirm 確認</button>
      </form>`,
    undefined,
    error ? { kind: 'error', text: error } : undefined,
  )
}

export function recoveryPage(codes: readonly string[]): Html {
  return layout(
    'Recovery codes 復原碼',
    html`<p>
        Each code logs in once in place of an authenticator code. Keep them where only you can reach them; they are not shown again.
        每組復原碼僅能使用一次，且不會再次顯示。
      </p>
      <ul class="codes">
        ${codes.map((c) => html`<li><code>${c}</code></li>`)}
      </ul>
      <p><a href="/login">Log in now 立即登入</a></p>`,
  )
}

export function forbiddenPage(viewer: Viewer | undefined): Html {
  return layout('Not allowed 無權限', html`<p>Your role may not open this page. 您的角色無法開啟此頁。</p>`, viewer)
}

export function table(headers: readonly string[], rows: readonly (readonly unknown[])[], empty = 'Nothing here. 無資料。'): Html {
  if (rows.length === 0) return html`<p class="empty">${empty}</p>`
  return html`<table>
    <thead>
      <tr>
        ${headers.map((h) => html`<th>${h}</th>`)}
      </tr>
    </thead>
    <tbody>
      ${rows.map(
        (r) =>
          html`<tr>
            ${r.map((c) => html`<td>${c}</td>`)}
          </tr>`,
      )}
    </tbody>
  </table>`
}

export const when = (ms: number | null | undefined) => (ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + 'Z' : '—')

export function userRow(u: UserView, dormant: boolean): unknown[] {
  const state = [u.disabled ? 'disabled 停用' : '', u.locked ? 'locked 鎖定' : '', dormant ? 'dormant 久未使用' : '', u.mfaEnrolled ? '' : 'MFA not enrolled']
    .filter(Boolean)
    .join(', ')
  return [u.name, u.role, state || 'active 使用中', when(u.lastLoginAt), when(u.passwordChangedAt), u.createdBy]
}
