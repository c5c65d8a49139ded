import type { FastifyReply, FastifyRequest } from 'fastify'
import { ProposalError } from '../config/proposal-files.ts'
import { describe, type AccountProposals, type AccountRequest } from './account-proposals.ts'
import { AccountError, causeText, isLowering, ROLES, type Role } from './accounts.ts'
import { html, type Html } from './html.ts'
import { formBody, layout, table, userRow, when, type Viewer } from './pages.ts'
import { COOKIE_OPTIONS as COOKIE, SESSION_COOKIE } from './sessions.ts'
import type { Routes } from './types.ts'
import { IdParams, NameActionParams } from './schemas.ts'

type Notice = { kind: 'ok' | 'error'; text: string }

/**
 * Users 使用者 (S5, #31): the accounts, with dormant ones flagged for the
 * periodic review; what makes or strengthens an account — a new one, a role,
 * re-enabling, unlocking, another's authenticator or password reset — is a
 * proposal a second administrator approves with their authenticator code;
 * disabling and taking the administrator role away are done at once. A new
 * account gets no password from anyone: the approver hands the person a
 * one-time enrolment code, and the person sets their own password at
 * Welcome 啟用帳號 and enrols their own authenticator.
 */
export function registerUserRoutes(r: Routes, proposals: AccountProposals): void {
  registerUserChanges(r, proposals)
  registerUserProposals(r, proposals)
  registerWelcome(r, proposals)
}

/** What the routes below share: accounts, page, handle, proposed. */
function userHelpers(r: Routes, proposals: AccountProposals) {
  const { deps: d } = r
  const accounts = d.accounts

  const page = (v: Viewer, notice?: Notice, code?: Html) => usersPage(d, proposals, v, notice, code)

  const handle = async (
    req: FastifyRequest,
    reply: FastifyReply,
    act: (v: Viewer) => Promise<{ notice: Notice; code?: Html }> | { notice: Notice; code?: Html },
  ) => {
    const v = r.viewer(req, reply)!
    try {
      const { notice, code } = await act(v)
      return r.page(reply, page(v, notice, code))
    } catch (err) {
      if (!(err instanceof AccountError || err instanceof ProposalError)) throw err
      return r.page(
        reply.code(err instanceof ProposalError && /approved by a second|does not approve/.test(err.message) ? 409 : 400),
        page(v, { kind: 'error', text: err.message }),
      )
    }
  }
  const proposed = (name: string) => ({
    notice: { kind: 'ok' as const, text: `Proposed: it waits for a second administrator. 已提議，待另一位管理員核准。 (${name})` },
  })
  return { accounts, page, handle, proposed }
}

/** S5: the users page, and changes proposed or made at once (disable). */
function registerUserChanges(r: Routes, proposals: AccountProposals): void {
  const { app, sessions } = r
  const { accounts, page, handle, proposed } = userHelpers(r, proposals)
  app.get('/users', { preValidation: r.need(['admin']) }, async (req, reply) => r.page(reply, page(r.viewer(req, reply)!)))

  app.post('/users', { preValidation: r.need(['admin']) }, (req, reply) =>
    handle(req, reply, (v) => {
      const b = formBody(req)
      const name = (b.name ?? '').trim()
      proposals.propose(v.user, { kind: 'create', name, role: (b.role ?? '') as Role }, b.reason ?? '')
      return proposed(name)
    }),
  )

  app.post('/users/:name/:action', { preValidation: r.need(['admin']), schema: { params: NameActionParams } }, (req, reply) =>
    handle(req, reply, (v) => {
      const { name, action } = req.params
      const b = formBody(req)
      const reason = (b.reason ?? '').trim()
      if (action === 'disable') {
        accounts.disable(v.user, name, reason)
        sessions.endUser(name)
        return { notice: { kind: 'ok', text: `${name} disabled. 已停用。` } }
      }
      const role = (b.role ?? '') as Role
      if (action === 'role' && accounts.user(name) && isLowering(accounts.user(name)!.role, role)) {
        accounts.lowerRole(v.user, name, role, reason)
        sessions.endUser(name)
        return { notice: { kind: 'ok', text: `${name} is ${role} now. 角色已變更。` } }
      }
      const kinds: Record<string, AccountRequest['kind']> = {
        unlock: 'unlock',
        enable: 'enable',
        role: 'role',
        'reset-mfa': 'reset-mfa',
        'reset-password': 'reset-password',
      }
      const kind = kinds[action]
      if (!kind) throw new AccountError(`No such action: ${action}.`)
      proposals.propose(v.user, kind === 'role' ? { kind, name, role } : ({ kind, name } as AccountRequest), reason)
      return proposed(name)
    }),
  )
}

/** #31: a proposal approved by a second administrator, or withdrawn. */
function registerUserProposals(r: Routes, proposals: AccountProposals): void {
  const { app, sessions } = r
  const { handle } = userHelpers(r, proposals)
  app.post('/users/proposals/:id/approve', { preValidation: r.need(['admin']), schema: { params: IdParams } }, (req, reply) =>
    handle(req, reply, async (v) => {
      const { id } = req.params
      const done = await proposals.approve(id, v.user, formBody(req).code ?? '')
      const c = done.proposal.change
      if (c.kind !== 'create' && c.kind !== 'unlock' && c.kind !== 'enable') sessions.endUser(c.name)
      const text = `Approved and applied: ${describe(c)}. 已核准並套用。`
      if (!done.enrolmentCode) return { notice: { kind: 'ok', text } }
      return {
        notice: { kind: 'ok', text },
        code: html`<div class="notice ok">
          <p>
            Give ${c.name} this one-time enrolment code in person; it is shown only now, works once and for 24 hours. They enter it at
            <a href="/welcome">/welcome</a> with their name, choose their own password and enrol their authenticator. 請當面交付此一次性啟用碼（僅顯示一次，24
            小時內有效）。
          </p>
          <p><code class="secret">${done.enrolmentCode}</code></p>
        </div>`,
      }
    }),
  )

  app.post('/users/proposals/:id/withdraw', { preValidation: r.need(['admin']), schema: { params: IdParams } }, (req, reply) =>
    handle(req, reply, (v) => {
      proposals.withdraw(req.params.id, v.user)
      return { notice: { kind: 'ok', text: 'Withdrawn. 已撤回。' } }
    }),
  )
}

/** #31: the person with an enrolment code sets their own password, then enrols their authenticator. */
function registerWelcome(r: Routes, proposals: AccountProposals): void {
  const { app, sessions } = r
  const { accounts } = userHelpers(r, proposals)
  // #31: the person with an enrolment code sets their own password, then enrols their authenticator.
  const welcomePage = (csrf: string, notice?: Notice) =>
    layout(
      'Welcome 啟用帳號',
      html`<p>
          Enter your account name and the one-time enrolment code an administrator gave you, and choose your password. Then you enrol your authenticator.
          請輸入帳號與管理員交付的一次性啟用碼，並設定您的密碼。
        </p>
        <form method="post" action="/welcome" class="stack">
          <input type="hidden" name="_csrf" value="${csrf}" />
          <label>Name 帳號 <input name="name" autocomplete="username" required /></label>
          <label>Enrolment code 啟用碼 <input name="code" autocomplete="off" required /></label>
          <label>Your password 密碼 <input name="password" type="password" autocomplete="new-password" required minlength="12" /></label>
          <p class="hint">At least 12 characters with letters, digits and symbols. 至少 12 個字元，含字母、數字與符號。</p>
          <button>Continue 繼續</button>
        </form>`,
      undefined,
      notice,
    )
  app.get('/welcome', async (req, reply) => r.page(reply, welcomePage(reply.generateCsrf({ userInfo: req.session?.id ?? 'none' }))))
  app.post('/welcome', { config: { rateLimit: r.loginLimit } }, async (req, reply) => {
    const b = formBody(req)
    const name = (b.name ?? '').trim().slice(0, 64)
    try {
      const { enrol } = await accounts.welcome(name, b.code ?? '', b.password ?? '', req.socket.remoteAddress ?? '')
      if (req.session) sessions.end(req.session.id)
      if (!enrol) return reply.redirect('/login', 303)
      const s = sessions.create({ enrolling: name })
      void reply.setCookie(SESSION_COOKIE, s.id, COOKIE)
      return reply.redirect('/enrol', 303)
    } catch (err) {
      if (!(err instanceof AccountError)) throw err
      return r.page(reply.code(400), welcomePage(reply.generateCsrf({ userInfo: req.session?.id ?? 'none' }), { kind: 'error', text: err.message }))
    }
  })
}

/** #31: the account proposals still open, each with what its viewer may do with it. */
function proposalRows(proposals: AccountProposals, v: Viewer) {
  return proposals
    .list()
    .filter((p) => p.state === 'open')
    .map((p) => [
      when(p.createdAt),
      p.author,
      describe(p.change),
      p.reason,
      p.author === v.user
        ? html`<span class="hint">waits for a second administrator 待另一位管理員核准</span>
            <form method="post" action="/users/proposals/${p.id}/withdraw" class="inline">
              <input type="hidden" name="_csrf" value="${v.csrf}" /><button>Withdraw 撤回</button>
            </form>`
        : html`<form method="post" action="/users/proposals/${p.id}/approve" class="inline">
              <input type="hidden" name="_csrf" value="${v.csrf}" /><input
                name="code"
                placeholder="your authenticator code 驗證碼"
                autocomplete="one-time-code"
                inputmode="numeric"
                required
              /><button>Approve 核准</button>
            </form>
            <form method="post" action="/users/proposals/${p.id}/withdraw" class="inline">
              <input type="hidden" name="_csrf" value="${v.csrf}" /><button>Withdraw 撤回</button>
            </form>`,
    ])
}

/** S5: the users, their states and the changes an administrator may propose. */
function usersPage(d: Routes['deps'], proposals: AccountProposals, v: Viewer, notice?: Notice, code?: Html): Html {
  const accounts = d.accounts
  const dormantMs = d.config.admin.dormantDays * 86_400_000
  const now = d.clock.now()
  const rows = accounts.users().map((u) => {
    const dormant = now - (u.lastLoginAt ?? u.createdAt) > dormantMs
    const act = (action: string, label: string, extra: Html | string = '') =>
      html`<form method="post" action="/users/${u.name}/${action}" class="inline">
        <input type="hidden" name="_csrf" value="${v.csrf}" />${extra}<input name="reason" placeholder="reason 原因" required /><button>${label}</button>
      </form>`
    const roles = html`<select name="role">
      ${ROLES.filter((x) => x !== u.role).map((x) => html`<option>${x}</option>`)}
    </select>`
    const actions =
      u.name === v.user
        ? ''
        : [
            u.locked ? act('unlock', 'Propose unlock 提議解鎖') : '',
            u.disabled ? act('enable', 'Propose enable 提議啟用') : act('disable', 'Disable now 立即停用'),
            act('role', 'Change role 變更角色', roles),
            act('reset-mfa', 'Propose MFA reset 提議重設驗證'),
            act('reset-password', 'Propose password reset 提議重設密碼'),
          ]
    const cause = u.locked && u.lockCause ? html`<br /><span class="hint">locked after failed logins from ${causeText(u.lockCause)}</span>` : ''
    return [...userRow(u, dormant), html`${u.enrolmentPending ? 'enrolment code issued 已發啟用碼' : ''}${cause}`, actions]
  })
  const open = proposalRows(proposals, v)
  return layout(
    'Users 使用者',
    html`${code ?? ''} ${table(['Name', 'Role', 'State', 'Last login', 'Password changed', 'Created by', 'Notes', ''], rows)}
      <h2>Proposals waiting 待核准提議</h2>
      ${table(['Proposed', 'By 提議者', 'Change 變更', 'Why 原因', ''], open, 'No account proposals are open. 無待核准提議。')}
      <h2>Propose a new account 提議新增帳號</h2>
      <p class="hint">
        A second administrator approves it and gets a one-time enrolment code for the person, who sets their own password and authenticator.
        新帳號由另一位管理員核准後發給一次性啟用碼，由本人設定密碼與驗證器。
      </p>
      <form method="post" action="/users" class="stack">
        <input type="hidden" name="_csrf" value="${v.csrf}" />
        <label>Name 帳號 <input name="name" required /></label>
        <label
          >Role 角色
          <select name="role">
            ${ROLES.map((role) => html`<option>${role}</option>`)}
          </select></label
        >
        <label>Why 原因 <input name="reason" required /></label>
        <button>Propose 提議</button>
      </form>`,
    v,
    notice,
  )
}
