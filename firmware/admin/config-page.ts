import { randomBytes } from 'node:crypto'
import { hashPassword } from '../../hal/crypto/password.ts'
import { configDiff } from '../audit/config-change.ts'
import { ConfigError, parseConfig, type Config } from '../config/load.ts'
import { ProposalError, Proposals, type Proposal } from '../config/proposals.ts'
import type { ConfigVersion } from '../config/versions.ts'
import { kindOf, valuesOf } from '../config/types.ts'
import { changes, configFromForm, get, LEAVES, maskItems, SECRET, set, type Leaf } from './config-form.ts'
import { html, type Html } from './html.ts'
import { maintenanceSection, pendingRestart } from './maintenance.ts'
import { approvalWindow, formBody, layout, table, type Viewer, when } from './pages.ts'
import type { Routes } from './types.ts'
import { IdActionParams, IdParams, NameActionParams } from './schemas.ts'

/**
 * Configuration under change control on the admin page (S5, S7): the version
 * in force and its history, a form generated from the schema (every key with
 * its type, default and description, grouped by section), proposals with
 * their diff, approval by a second administrator with TOTP entered again, and
 * "restore version N" in one step. Secrets are never shown: password hashes
 * and the paths of PIN, password and token files stay as they are unless a new
 * value is typed.
 */
function formFields(config: Config): Html {
  const sections = new Map<string, Leaf[]>()
  for (const l of LEAVES) {
    const section = l.key.split('.')[0]!
    sections.set(section, [...(sections.get(section) ?? []), l])
  }
  return html`${[...sections].map(
    ([section, ls]) =>
      html`<fieldset>
        <legend>${section}</legend>
        ${ls.map(({ key, field }) => {
          const value = get(config, key)
          const name = `c:${key}`
          const label = html`<span class="key">${key}</span> <span class="hint">${field.description}</span>`
          const kind = kindOf(field)
          const values = valuesOf(field)
          if (kind === 'boolean')
            return html`<label
              >${label}<select name="${name}">
                <option${value ? html` selected` : ''}>true</option>
                <option${value ? '' : html` selected`}>false</option>
              </select></label
            >`
          if (values)
            return html`<label
              >${label}<select name="${name}">
                ${values.map((v) => html`<option${v === value ? html` selected` : ''}>${v}</option>`)}
              </select></label
            >`
          if (kind === 'integer') return html`<label>${label}<input type="number" name="${name}" value="${String(value)}" /></label>`
          if (kind === 'list' || kind === 'records')
            return html`<label>${label}<textarea name="${name}" rows="3">${JSON.stringify(maskItems(value), null, 1)}</textarea></label>`
          if (SECRET.test(key)) return html`<label>${label}<input type="password" name="${name}" value="" placeholder="unchanged; type to replace" /></label>`
          return html`<label>${label}<input name="${name}" value="${String(value)}" /></label>`
        })}
      </fieldset>`,
  )}`
}

type RawAccount = { name: string; passwordHash: string; allowFrom?: string[] }

const accountsOf = (raw: unknown): RawAccount[] => ((get(raw, 'submission.accounts') as RawAccount[] | undefined) ?? []).map((a) => ({ ...a }))

function withAccounts(raw: unknown, accounts: RawAccount[]): unknown {
  const next = structuredClone(raw ?? {}) as Record<string, unknown>
  set(next, 'submission.accounts', accounts)
  return next
}

const cidrs = (text: string | undefined) =>
  (text ?? '')
    .split(/[\s,]+/)
    .map((x) => x.trim())
    .filter(Boolean)

function accountsSection(v: Viewer, raw: unknown): Html {
  const input = (name: string, placeholder: string, value = '') => html`<input name="${name}" placeholder="${placeholder}" value="${value}" />`
  const hidden = html`<input type="hidden" name="_csrf" value="${v.csrf}" />`
  const reason = input('reason', 'reason 原因')
  return html`${table(
      ['Account', 'May log in from', ''],
      accountsOf(raw).map((a) => [
        a.name,
        (a.allowFrom ?? []).join(', ') || 'anywhere allowed globally',
        html`<form method="post" action="/config/accounts/${a.name}/rotate" class="inline">${hidden}${reason}<button>New password 更換密碼</button></form>
          <form method="post" action="/config/accounts/${a.name}/allow" class="inline">
            ${hidden}${input('allowFrom', 'CIDRs', (a.allowFrom ?? []).join(', '))}${reason}<button>Set allowlist 設定來源</button>
          </form>
          <form method="post" action="/config/accounts/${a.name}/remove" class="inline">${hidden}${reason}<button>Remove 移除</button></form>`,
      ]),
      'No accounts. 無帳號。',
    )}
    <form method="post" action="/config/accounts" class="row">
      ${hidden}<label>New account 新帳號 ${input('name', 'name')}</label><label>From ${input('allowFrom', 'CIDRs, e.g. 10.1.2.0/24')}</label>${reason}<button>
        Propose 提出
      </button>
    </form>
    <p class="hint">
      Each is a proposal a second administrator approves; a new password is shown once, here, and works once approved. 每項變更皆需另一位管理員核准。
    </p>`
}

export function registerConfigRoutes(r: Routes): void {
  registerConfigProposing(r)
  registerConfigAccounts(r)
  registerConfigDecisions(r)
}

/** What the routes below share: c, admins, page, proposalPage, failure. */
function configHelpers(r: Routes) {
  const { deps: d } = r
  const c = d.changeControl
  const admins = ['admin'] as const

  const page = (v: Viewer, notice?: Notice) => configPage(c, d.config, v, notice)
  const proposalPage = (v: Viewer, p: Proposal, notice?: Notice) => proposalView(c, v, p, notice)

  const failure = (err: unknown) => {
    if (err instanceof ConfigError || err instanceof ProposalError) return { kind: 'error' as const, text: err.message }
    throw err
  }
  return { c, admins, page, proposalPage, failure }
}

/** S7: the configuration page, a change proposed from its form, or an earlier version proposed again. */
function registerConfigProposing(r: Routes): void {
  const { app } = r
  const { c, admins, page, failure } = configHelpers(r)
  app.get('/config', { preValidation: r.need(admins) }, async (req, reply) => r.page(reply, await page(r.viewer(req, reply)!)))
  app.post('/config/propose', { preValidation: r.need(admins) }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    try {
      const base = await c.versions.inForce()
      const p = await c.proposals.propose(v.user, configFromForm(formBody(req), base?.config), formBody(req).reason ?? '')
      return reply.redirect(`/config/proposals/${p.id}`, 303)
    } catch (err) {
      return r.page(reply.code(400), await page(v, failure(err)))
    }
  })
  app.post('/config/restore', { preValidation: r.need(admins) }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    try {
      const p = await c.proposals.restore(v.user, Number(formBody(req).version), formBody(req).reason ?? '')
      return reply.redirect(`/config/proposals/${p.id}`, 303)
    } catch (err) {
      return r.page(reply.code(400), await page(v, failure(err)))
    }
  })
}

/** Item 8: submission accounts, each change a proposal. */
function registerConfigAccounts(r: Routes): void {
  const { app } = r
  const { c, admins, page, proposalPage, failure } = configHelpers(r)
  // Item 8: submission accounts, each change a proposal; a new password is made here, shown once, kept only as its hash.
  const accountChange = async (
    req: { body: unknown },
    v: Viewer,
    change: (accounts: RawAccount[]) => { accounts: RawAccount[]; what: string; password?: string },
  ) => {
    const base = await c.versions.inForce()
    const { accounts, what, password } = change(accountsOf(base?.config))
    const p = await c.proposals.propose(v.user, withAccounts(base?.config, accounts), `${what}: ${formBody(req).reason ?? ''}`.replace(/: $/, ''))
    const text = password
      ? `Proposal made. The password (shown once, valid when the change is approved): ${password}`
      : 'Proposal made; a second administrator approves it.'
    return { p, text }
  }
  const newPassword = async () => {
    const password = randomBytes(18).toString('base64url')
    return { password, hash: await hashPassword(password) }
  }
  app.post('/config/accounts', { preValidation: r.need(admins) }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    try {
      const name = (formBody(req).name ?? '').trim()
      const { password, hash } = await newPassword()
      const { p, text } = await accountChange(req, v, (accounts) => {
        if (accounts.some((a) => a.name === name)) throw new ProposalError(`There is already an account named ${name}.`)
        return {
          accounts: [...accounts, { name, passwordHash: hash, allowFrom: cidrs(formBody(req).allowFrom) }],
          what: `new submission account ${name}`,
          password,
        }
      })
      return r.page(reply, await proposalPage(v, p, { kind: 'ok', text }))
    } catch (err) {
      return r.page(reply.code(400), await page(v, failure(err)))
    }
  })
  app.post('/config/accounts/:name/:action', { preValidation: r.need(admins), schema: { params: NameActionParams } }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const { name, action } = req.params
    try {
      const fresh = action === 'rotate' ? await newPassword() : undefined
      const { p, text } = await accountChange(req, v, (accounts) => {
        const at = accounts.findIndex((a) => a.name === name)
        if (at < 0) throw new ProposalError(`No submission account ${name}.`)
        if (action === 'remove') return { accounts: accounts.filter((a) => a.name !== name), what: `remove submission account ${name}` }
        if (action === 'allow') {
          accounts[at] = { ...accounts[at]!, allowFrom: cidrs(formBody(req).allowFrom) }
          return { accounts, what: `allowlist of submission account ${name}` }
        }
        if (action === 'rotate' && fresh) {
          accounts[at] = { ...accounts[at]!, passwordHash: fresh.hash }
          return { accounts, what: `new password for submission account ${name}`, password: fresh.password }
        }
        throw new ProposalError('No such action.')
      })
      return r.page(reply, await proposalPage(v, p, { kind: 'ok', text }))
    } catch (err) {
      return r.page(reply.code(400), await page(v, failure(err)))
    }
  })
}

/** S5, S7: a proposal shown, approved by a second administrator (and applied), rejected or withdrawn. */
function registerConfigDecisions(r: Routes): void {
  const { app, deps: d } = r
  const { c, admins, proposalPage, failure } = configHelpers(r)
  app.get('/config/proposals/:id', { preValidation: r.need(admins), schema: { params: IdParams } }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const p = c.proposals.get(req.params.id)
    if (!p) return reply.code(404).send('no such proposal\n')
    return r.page(reply, await proposalPage(v, p))
  })
  app.post('/config/proposals/:id/:action', { preValidation: r.need(admins), schema: { params: IdActionParams } }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const { id, action } = req.params
    const p = c.proposals.get(id)
    if (!p) return reply.code(404).send('no such proposal\n')
    try {
      if (action === 'withdraw') c.proposals.withdraw(id, v.user)
      else if (action === 'approve') {
        if (p.author === v.user && !c.proposals.selfApprovalAllowed)
          throw new ProposalError('A change is approved by a second administrator, not by its author.')
        // #31: not by an account the author made or changed within the proposal's lifetime.
        const minted = p.author === v.user ? undefined : d.accounts.mintedBy(v.user, p.author, approvalWindow(d, p.createdAt))
        if (minted) {
          d.events.emit({
            type: 'config.proposal',
            id,
            action: 'approval-refused',
            who: v.user,
            author: p.author,
            reason: p.reason,
            baseVersion: p.baseVersion,
            note: minted,
          })
          throw new ProposalError(minted)
        }
        // S4: the approver's second factor again, at the moment of approval.
        if (!(await d.accounts.verifyCode(v.user, formBody(req).code ?? ''))) throw new ProposalError('That authenticator code is not right.')
        const base = (await c.versions.verifyAll()).find((x) => x.number === p.baseVersion)
        const later = changes(base?.config, p.config).filter((x) => !x.now)
        const version = await c.proposals.approve(id, v.user, formBody(req).hash ?? '', c.apply)
        // S7: what changed, before and after, in the trail (which removes secrets from config records).
        const diff = configDiff(parseConfig(base?.config ?? {}), parseConfig(p.config))
        if (diff)
          d.events.emit({ type: 'config.changed', who: `${p.author}, approved by ${v.user}`, reason: `version ${version.number}: ${p.reason}`, ...diff })
        const text = `Applied as version ${version.number}.${later.length ? ` ${later.length} key(s) take effect at the next restart.` : ''}`
        return r.page(reply, await proposalPage(v, c.proposals.get(id)!, { kind: 'ok', text }))
      } else return reply.code(404).send('no such action\n')
      return r.page(reply, await proposalPage(v, c.proposals.get(id)!, { kind: 'ok', text: `${action}: done` }))
    } catch (err) {
      return r.page(reply.code(409), await proposalPage(v, c.proposals.get(id)!, failure(err)))
    }
  })
}

/** S7: the configuration in force, its versions, the open proposals and the forms to propose a change. */
async function configPage(c: ChangeControl, config: Routes['deps']['config'], v: Viewer, notice?: Notice): Promise<Html> {
  const versions = await c.versions.verifyAll()
  const inForce = versions.at(-1)
  const open = c.proposals.list().filter((p) => p.state === 'open')
  return layout(
    'Configuration 設定',
    html`<p>
        Version in force 目前版本: <strong>${inForce?.number ?? '—'}</strong>${
          inForce ? html` — ${inForce.reason} (by ${inForce.author}${inForce.approver ? `, approved by ${inForce.approver}` : ''}, ${inForce.time})` : ''
        }
      </p>
      ${c.proposals.selfApprovalAllowed ? html`<p class="notice error">Self-approval is allowed on this box (admin.allowSelfApproval).</p>` : ''}
      <h2>Open proposals 待核准</h2>
      ${table(
        ['Proposal', 'Author', 'Reason', 'Proposed', 'Expires'],
        open.map((p) => [html`<a href="/config/proposals/${p.id}">${p.id}</a>`, p.author, p.reason, when(p.createdAt), when(p.expiresAt)]),
        'None. 無。',
      )}
      <h2>Versions 版本紀錄</h2>
      ${table(
        ['#', 'Time', 'Author', 'Approver', 'Reason', ''],
        [...versions]
          .reverse()
          .map((x: ConfigVersion) => [
            x.number,
            x.time,
            x.author,
            x.approver || '—',
            x.reason,
            x.number === inForce?.number
              ? 'in force'
              : html`<form method="post" action="/config/restore" class="inline">
                  <input type="hidden" name="_csrf" value="${v.csrf}" /><input type="hidden" name="version" value="${x.number}" /><input
                    name="reason"
                    placeholder="reason 原因"
                    required
                  /><button>Restore 還原</button>
                </form>`,
          ]),
      )}
      <h2>Submission accounts 傳送帳號</h2>
      ${accountsSection(v, inForce?.config)} ${maintenanceSection(v, pendingRestart(config, inForce?.config), c.restart.supervised)}
      <h2>Propose a change 提出變更</h2>
      <form method="post" action="/config/propose" class="config">
        <input type="hidden" name="_csrf" value="${v.csrf}" />
        ${formFields(parseConfig(inForce?.config ?? {}))}
        <label>Reason 原因 <input name="reason" required /></label>
        <button>Propose 提出</button>
      </form>`,
    v,
    notice,
  )
}

/** S7: one proposal, what it changes against the version it was made on, and what its viewer may do. */
async function proposalView(c: ChangeControl, v: Viewer, p: Proposal, notice?: Notice): Promise<Html> {
  const base = (await c.versions.verifyAll()).find((x) => x.number === p.baseVersion)
  const rows = changes(base?.config, p.config)
  const canApprove = p.state === 'open' && (p.author !== v.user || c.proposals.selfApprovalAllowed)
  return layout(
    `Proposal ${p.id}`,
    html`<p>
        ${p.state} — by ${p.author}, ${when(p.createdAt)}:
        ${p.reason}${p.decidedBy ? html` — ${p.state} by ${p.decidedBy} ${when(p.decidedAt)}` : ''}${p.note ? html` (${p.note})` : ''}
      </p>
      ${table(
        ['Key', 'In version ' + String(p.baseVersion), 'Proposed', 'Takes effect'],
        rows.map((x) => [x.key, x.before, x.after, x.now ? 'at once 立即' : 'at next restart 重新啟動後']),
      )}
      ${
        canApprove
          ? html`<form method="post" action="/config/proposals/${p.id}/approve" class="stack">
              <input type="hidden" name="_csrf" value="${v.csrf}" /><input type="hidden" name="hash" value="${Proposals.contentHash(p)}" />
              <label>Your authenticator code, to approve 以驗證碼核准 <input name="code" autocomplete="one-time-code" inputmode="numeric" required /></label>
              <button>Approve and apply 核准並套用</button>
            </form>`
          : p.state === 'open'
            ? html`<p class="hint">A second administrator approves it. 需由另一位管理員核准。</p>`
            : ''
      }
      ${
        p.state === 'open'
          ? html`<form method="post" action="/config/proposals/${p.id}/withdraw" class="inline">
              <input type="hidden" name="_csrf" value="${v.csrf}" /><button>Withdraw 撤回</button>
            </form>`
          : ''
      }
      <p><a href="/config">Back 返回</a></p>`,
    v,
    notice,
  )
}

type Notice = { kind: 'ok' | 'error'; text: string }
type ChangeControl = Routes['deps']['changeControl']
