import type { Config } from '../config/load.ts'
import type { ProbeSummary } from '../events.ts'
import { SPOOL_STATES } from '../spool/types.ts'
import type { FirmwareView } from '../update/agent.ts'
import { html, type Html } from './html.ts'
import { layout, table, type Viewer } from './pages.ts'
import type { SystemView } from './system.ts'

/**
 * The dashboard and queue pages (S11): what the box is doing, from the same
 * status and queue service `npm run status` and `npm run queue` use.
 */
type Status = Record<string, unknown>

interface HsmView {
  state?: string
  error?: string
  certificates?: { label: string; subject: string; notAfter: string; daysLeft: number }[]
  probe?: ProbeSummary
}

/**
 * #38: the start-up probe on the HSM card — the token, what it lacks, and whether it kept every key in when
 * offered to C_WrapKey (M6).
 */
function probeLines(p: ProbeSummary | undefined): Html {
  if (!p) return html`<p class="hint">Probe 檢測: not run yet 尚未執行</p>`
  const wraps = Object.values(p.wrap)
  const kept = wraps.some((w) => w === 'wrapped') ? 'no 否' : wraps.length && wraps.every((w) => w.startsWith('refused')) ? 'yes 是' : 'not tested 未測'
  return html`<p>
      Probe 檢測: ${p.manufacturer} ${p.model} ${p.firmware}, token ${p.token};
      ${p.absent.length ? `lacks 缺少 ${p.absent.join(', ')}` : 'every mechanism the box uses 具備所需機制'}; keys kept in the token 金鑰不可匯出:
      <strong>${kept}</strong>
    </p>
    ${p.refused ? html`<p class="alarm">${p.refused}</p>` : ''}`
}

/** What the dashboard and /metrics know beside the status. */
export interface Signals {
  failingWebhooks: ReadonlyMap<string, string>
  auditOverBudget: { bytes: number; budget: number; at: number } | undefined
  /** #31: accounts locked by failed logins, and from where those came. */
  lockedAccounts?: readonly { name: string; cause: string }[]
  /** #31: account changes waiting for a second administrator. */
  accountProposals?: number
  now: number
}

/**
 * S11: every alarm the box raises, by kind — the dashboard shows them, and /metrics exports
 * `sg_alarms{kind}` so the rules in docs/monitoring/alerts.yml page someone for each.
 */
export const ALARM_KINDS = [
  'hsm',
  'certificate',
  'held',
  'audit-backlog',
  'egress-paused',
  'webhook',
  'account-locked',
  'account-proposals',
  'self-approval',
  'audit-disk',
  'data-disk',
] as const
export type AlarmKind = (typeof ALARM_KINDS)[number]

export interface Alarm {
  kind: AlarmKind
  text: string
}

/** What needs a person's attention, worst first. */
export function alarms(status: Status, config: Config, signals?: Signals, system?: SystemView): Alarm[] {
  const out: Alarm[] = []
  const add = (kind: AlarmKind, text: string) => out.push({ kind, text })
  const hsm = status.hsm as HsmView | undefined
  if (hsm && hsm.state !== 'connected') add('hsm', `HSM ${hsm.state ?? 'unknown'}${hsm.error ? `: ${hsm.error}` : ''} — no statement can be signed`)
  if (hsm?.probe?.refused) add('hsm', `HSM probe: ${hsm.probe.refused}`)
  for (const c of hsm?.certificates ?? [])
    if (c.daysLeft <= config.hsm.certificateWarnDays) add('certificate', `certificate ${c.label} expires in ${c.daysLeft} days (${c.notAfter})`)
  const spool = (status.spool ?? {}) as Record<string, number>
  if ((spool.held ?? 0) > 0) add('held', `${spool.held} mails held, waiting for an operator`)
  const submission = (status.submission ?? {}) as Record<string, number>
  if ((submission.auditBacklog ?? 0) > 0) add('audit-backlog', `${submission.auditBacklog} audit records waiting for the disk`)
  const delivery = (status.delivery ?? {}) as { paused?: { address: string; until: string }[] }
  for (const p of delivery.paused ?? []) add('egress-paused', `egress ${p.address} paused until ${p.until}`)
  for (const [url, since] of signals?.failingWebhooks ?? []) add('webhook', `webhook ${url} failing since ${since}`)
  for (const l of signals?.lockedAccounts ?? [])
    add(
      'account-locked',
      `account ${l.name} locked after failed logins from ${l.cause || 'unknown addresses'} — unlock: a second administrator, ` +
        `or npm run account -- unlock ${l.name} at the console`,
    )
  if (signals?.accountProposals) add('account-proposals', `${signals.accountProposals} account change(s) wait for a second administrator (Users)`)
  if (config.admin.allowSelfApproval)
    add('self-approval', 'an administrator may approve their own configuration change (admin.allowSelfApproval): four eyes are off')
  const a = signals?.auditOverBudget
  if (a && signals.now - a.at < 86_400_000) add('audit-disk', `audit trail over its disk budget: ${gib(a.bytes)} of ${gib(a.budget)}`)
  if (system && system.dataDisk.free < system.dataDisk.total * (config.spool.reservePercent / 100) * 1.5)
    add('data-disk', `the data directory's disk has ${gib(system.dataDisk.free)} free of ${gib(system.dataDisk.total)}`)
  return out
}

export function dashboardPage(v: Viewer, status: Status, config: Config, system: SystemView | undefined, signals?: Signals, firmware?: FirmwareView): Html {
  const spool = (status.spool ?? {}) as Record<string, number>
  const delivery = (status.delivery ?? {}) as Record<string, unknown>
  const hsm = (status.hsm ?? {}) as HsmView
  const found = alarms(status, config, signals, system).map((a) => a.text)
  const counts = ['delivered', 'deferred', 'bounced', 'expired', 'removed', 'read', 'unread'].map((k) => [k, delivery[k] ?? 0])
  return layout(
    'Dashboard 儀表板',
    html`<section class="alarms">
        ${
          found.length
            ? html`<ul>
                ${found.map((a) => html`<li class="alarm">${a}</li>`)}
              </ul>`
            : html`<p class="ok">No alarms. 無警示。</p>`
        }
      </section>
      <section class="cards">
        <div class="card">
          <h2>Queue 佇列</h2>
          ${table(['State', 'Mails'], [...SPOOL_STATES.map((s) => [html`<a href="/queue?state=${s}">${s}</a>`, spool[s] ?? 0]), ['total', spool.total ?? 0]])}
        </div>
        <div class="card">
          <h2>Delivery since start 啟動後投遞</h2>
          ${table(['Outcome', 'Mails'], counts)}
        </div>
        <div class="card">
          <h2>HSM</h2>
          <p>State 狀態: <strong>${hsm.state ?? 'unknown'}</strong></p>
          ${probeLines(hsm.probe)}
          ${table(
            ['Certificate', 'Expires', 'Days left'],
            (hsm.certificates ?? []).map((c) => [c.label, c.notAfter.slice(0, 10), c.daysLeft]),
          )}
        </div>
      </section>
      ${firmware ? firmwareCard(firmware) : ''} ${boxCards(system, config)}
      <section class="charts">
        <h2>Last hour 最近一小時</h2>
        <div class="chart" data-series="/api/series?span=hour" data-span="3600" data-metric="bits" id="chart-bits"></div>
        <div class="chart" data-series="/api/series?span=hour" data-span="3600" data-metric="rates" id="chart-rates"></div>
        <h2>Last day 最近一天</h2>
        <div class="chart" data-series="/api/series?span=day" data-span="86400" data-metric="bits" id="chart-bits-day"></div>
        <div class="chart" data-series="/api/series?span=day" data-span="86400" data-metric="rates" id="chart-rates-day"></div>
        <p class="hint">Egress bits/s against the bandwidth cap of ${(config.delivery.bandwidthBitsPerSecond / 1e6).toFixed(1)} Mbit/s (M3).</p>
      </section>`,
    v,
  )
}

const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`

function boxCards(system: SystemView | undefined, config: Config): Html {
  if (!system) return html`<p class="hint">Reading the box's hardware… 讀取設備資訊中</p>`
  const egress = new Set(config.delivery.egress.map((e) => e.address))
  const days = Math.floor(system.uptimeSeconds / 86400)
  const hours = Math.floor((system.uptimeSeconds % 86400) / 3600)
  return html`<section class="cards">
    <div class="card">
      <h2>Box 設備</h2>
      ${table(
        ['', ''],
        [
          ['Model 型號', system.model || '—'],
          ['Serial 序號', system.serial || '—'],
          ['Up 運行時間', `${days} d ${hours} h`],
          ['CPU load 負載', `${system.cpuLoadPercent.toFixed(0)} %`],
          ['Memory 記憶體', `${gib(system.memory.used)} of ${gib(system.memory.total)}`],
          ['Data disk 資料磁碟', `${gib(system.dataDisk.free)} free of ${gib(system.dataDisk.total)}`],
        ],
      )}
    </div>
    ${inventoryCard(system)}
    <div class="card wide">
      <h2>Network 網路</h2>
      ${table(
        ['NIC', 'Addresses 位址', 'Link 連線', 'Speed', 'MAC'],
        system.nics.map((n) => [
          n.name,
          n.addresses.map((a) => (egress.has(a) ? html`<span class="egress" title="egress address 對外位址">${a}</span> ` : html`<span>${a}</span> `)),
          n.state,
          n.speedMbps ? `${n.speedMbps} Mbit/s` : '—',
          n.mac || '—',
        ]),
      )}
      <p class="hint">Egress addresses are highlighted. 對外發信位址以醒目標示。</p>
    </div>
  </section>`
}

/** ETSI 5.3: which version runs, what the other slot holds, and how the last update ended — with its reason. */
function firmwareCard(f: FirmwareView): Html {
  const u = f.lastUpdate
  return html`<section class="cards">
    <div class="card wide">
      <h2>Firmware 韌體 <a class="hint" href="/system/update">update 更新</a></h2>
      ${table(
        ['', ''],
        [
          ['Running 執行中', `${f.running}${f.slot ? ` (slot ${f.slot})` : ''}${f.trial ? ' — on trial 試用中' : ''}`],
          ['Other slot 另一槽', f.other ?? '—'],
          ['Minimum security version 最低安全版本', f.minSecurityVersion ?? '—'],
          [
            'Last update 最近更新',
            u
              ? html`<span class="${u.outcome === 'committed' ? '' : 'notice error'}">${u.version}: ${u.outcome} — ${u.reason} (${u.at.slice(0, 16)})</span>`
              : '—',
          ],
        ],
      )}
    </div>
  </section>`
}

/** S8: the inventory record provisioning wrote (location, owner, purpose, listeners). */
function inventoryCard(system: SystemView): Html {
  const i = system.inventory
  if (!i)
    return html`<div class="card">
      <h2>Inventory 資產清冊</h2>
      <p class="hint">Not provisioned: run npm run provision. 尚未完成佈建。</p>
    </div>`
  return html`<div class="card">
    <h2>Inventory 資產清冊</h2>
    ${table(
      ['', ''],
      [
        ['Location 位置', i.location],
        ['Owner 負責單位', i.owner],
        ['Purpose 用途', i.purpose],
        ['Provisioned 佈建時間', i.provisionedAt.replace('T', ' ').slice(0, 16)],
        ['Listens 服務埠', i.ports.map((p) => html`<span title="${p.name}">${p.address}:${p.port}</span> `)],
      ],
    )}
  </div>`
}
