import { EventEmitter } from 'node:events'
import { readFileSync, statfsSync } from 'node:fs'
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { systemClock, type Clock } from '../hal/clock.ts'
import { AccountError, Accounts } from './admin/accounts.ts'
import { CONSOLE_ACCOUNT_COMMANDS, consoleAccountAction } from './admin/console.ts'
import { BoxMetrics } from './admin/metrics.ts'
import { AdminServer, adminTlsOptions } from './admin/server.ts'
import { SystemInfo } from './admin/system.ts'
import { ConfigChangeAudit } from './audit/config-change.ts'
import { recipientHash } from './audit/redact.ts'
import { SyslogForwarder } from './audit/syslog.ts'
import { AuditTrail } from './audit/trail.ts'
import { ReturnPathListener } from './return-path/listener.ts'
import { ReturnPathTokens } from './return-path/verp.ts'
import type { Config } from './config/load.ts'
import { Proposals } from './config/proposals.ts'
import type { Starting } from './config/start.ts'
import { LIVE_KEYS } from './config/schema.ts'
import { ConfigStore } from './config/store.ts'
import { ConfigVersions } from './config/versions.ts'
import { namedBackup } from './control/backup.ts'
import { ControlServer, Refused } from './control/server.ts'
import { statusReport } from './control/status.ts'
import { Daemon } from './daemon.ts'
import { DeliveryEngine } from './delivery/engine.ts'
import { GatewayError } from './errors.ts'
import { EventHub, LogEventSink } from './events.ts'
import { CHECKPOINT_KEY_LABEL, CONFIG_VERSION_LABEL } from './keys/labels.ts'
import { KeyService } from './keys/service.ts'
import type { Logger } from './log.ts'
import { buildChain, type Chain } from './pipeline/chain.ts'
import type { Handoff } from './pipeline/handoff.ts'
import { Ledger } from './ledger/ledger.ts'
import { TrackingTokens } from './ledger/tokens.ts'
import { TrackingListener } from './ledger/tracking.ts'
import { WebhookSender } from './ledger/webhooks.ts'
import { Spool } from './spool/spool.ts'
import { SubmissionServer } from './submission/server.ts'
import { loadTlsMaterial, serverTlsOptions } from './submission/tls.ts'
import { readinessSelfTest, UpdateAgent } from './update/agent.ts'

/** sysexits.h EX_TEMPFAIL: the exit of a restart asked on the admin page (the unit starts the box again). */
export const EX_TEMPFAIL = 75

/** Every component of a running box, built and wired by `buildBox`. */
export interface Box {
  readonly config: Config
  /** The one live configuration (S7): approved changes go through `store.set`. */
  readonly store: ConfigStore
  readonly log: Logger
  readonly events: EventHub
  readonly hsm: KeyService
  readonly audit: AuditTrail
  readonly ledger: Ledger
  readonly spool: Spool
  readonly chain: Chain
  readonly submission: SubmissionServer
  readonly delivery: DeliveryEngine
  readonly returns: ReturnPathListener
  readonly tracker: TrackingListener
  readonly control: ControlServer
  readonly accounts: Accounts
  readonly admin: AdminServer
  readonly versions: ConfigVersions
  readonly update: UpdateAgent
  /** Starts the components in order, stops them in reverse. */
  readonly daemon: Daemon
  /** A stop the box itself asks for (the admin page's restart), with its exit code: main stops the daemon. */
  readonly stops: EventEmitter<{ stop: [why: string, code: number] }>
  /** #33: how long the event loop was held up since the box started serving (status). */
  readonly loopDelay: ReturnType<typeof monitorEventLoopDelay>
}

export interface BoxDeps {
  log: Logger
  clock?: Clock
  /** Where the configuration came from (config/start.ts); a test gives none and starts from its config. */
  starting?: Omit<Starting, 'config'>
  /** Under systemd (INVOCATION_ID set), a restart is a stop the unit starts again. */
  env?: NodeJS.ProcessEnv
  /** Where main.ts is: the update agent's slot (defaults to this folder). */
  firmwareDir?: string
  /** What stands where the spool stands at the end of the chain (a test's probe); the spool by default. */
  handoff?: (spool: Spool) => Handoff
  /** Test only (#38): a vendor HSM's behaviour reproduced around the token (HsmOptions.quirks, threadQuirks). */
  hsmQuirks?: ConstructorParameters<typeof KeyService>[0]['quirks']
}

/**
 * The composition root (#34): every component built once, in start order, with the one
 * chain of stages (pipeline/chain.ts). main and the tests build the box here, so the tests
 * run the product's own wiring. Nothing starts until `daemon.start()`.
 */
export function buildBox(config: Config, deps: BoxDeps): Box {
  const log = deps.log
  const clock = deps.clock ?? systemClock
  const store = new ConfigStore(config)
  // Every event goes to the log (recipients masked) and to the audit trail (S6).
  const events = new EventHub([new LogEventSink(log)])
  const hsm = new KeyService({ config, log, clock, events, ...(deps.hsmQuirks ? { quirks: deps.hsmQuirks } : {}) })
  const audit = new AuditTrail({ config, log, hsm: hsm.hsm, clock })
  events.add(audit)
  // M9: the statement ledger, a view of the trail kept current from it.
  const ledger = new Ledger({ config, log, trail: audit, events, clock })
  const spool = new Spool({ config, log, hsm: hsm.hsm, events, clock })
  const tracking = new TrackingTokens(hsm.hsm)
  const returnPath = new ReturnPathTokens(hsm.hsm)
  const chain = buildChain({ store, log, events, clock, hsm: hsm.hsm, tracking, returnPath, spool: deps.handoff?.(spool) ?? spool })
  // S6: a mail is taken only while the trail can record what happens to it (a full disk holds
  // its records in memory, bounded: submission waits rather than the trail losing any).
  const admit = () =>
    audit.accepting ? undefined : new GatewayError('EAUDIT_BACKLOG', `the audit trail has ${audit.backlog} records waiting to be written; try again later`)
  const submission = new SubmissionServer({ config, log, handoff: chain.handoff, clock, events, admit })
  const delivery = new DeliveryEngine({ config, log, spool, events, clock, returnPath, trail: audit })
  const tracker = new TrackingListener({ config, tokens: tracking, events, log, onRead: (id, evidence) => delivery.read(id, evidence) })
  const returns = returnPathListener({ config, log, clock, events, returnPath, delivery, ledger })
  // S7: the resource owners take an approved change of the keys they hold; the rest read `store.current`.
  store.on('submission:policy', ['policy'], (next) => chain.policy.reconfigure(next))
  store.on('submission', ['submission.accounts', 'submission.allowFrom'], (next) => submission.reconfigure(next))
  store.on('delivery', DELIVERY_LIVE_KEYS, (next) => delivery.reconfigure(next))

  const loopDelay = monitorEventLoopDelay({ resolution: 10 })
  loopDelay.enable()
  const versions = new ConfigVersions({
    dataDir: config.dataDir,
    mac: (data) => hsm.hsm.keys.hmac(CONFIG_VERSION_LABEL, data),
    clock,
    events,
    log,
    given: givenConfig(deps.starting),
  })
  const update = new UpdateAgent({
    firmwareDir: deps.firmwareDir ?? import.meta.dirname,
    events,
    log,
    selfTest: readinessSelfTest({
      hsm,
      versions,
      spool,
      submissionPort: () => submission.endpoints.starttls.port,
      auditAccepting: () => audit.accepting,
    }),
  })
  const parts = { config, store, log, events, hsm, audit, ledger, spool, chain, submission, delivery, returns, tracker, versions, update, loopDelay }
  const { control, admin, accounts, metrics, stops } = buildOperator(parts, deps, clock)
  events.add(metrics)
  hsm.hsm.keys.onSign = (seconds) => metrics.observeSign(seconds)
  const daemon = new Daemon(
    [
      hsm,
      audit,
      // S7, S9: the configuration as HMAC-checked versions; a version edited on disk stops the start here.
      versions,
      new ConfigChangeAudit({ config, trail: audit, version: () => versions.inForce() }),
      new SyslogForwarder({ config, log, trail: audit }),
      ledger,
      new WebhookSender({ config, log, hsm: hsm.hsm, ledger, events, clock }),
      tracker,
      returns,
      spool,
      chain.policy,
      chain.signing,
      delivery,
      control,
      admin,
      submission,
      // ETSI 5.3: started last; a version on trial checks itself once everything runs.
      update,
    ],
    log,
  )
  return { ...parts, control, accounts, admin, daemon, stops }
}

/** M8, M11: the return path, whose reports reach delivery (bounces, reads) and, through the ledger's facts, the firm's notices. */
function returnPathListener(p: {
  config: Config
  log: Logger
  clock: Clock
  events: EventHub
  returnPath: ReturnPathTokens
  delivery: DeliveryEngine
  ledger: Ledger
}): ReturnPathListener {
  const { config, log, delivery, ledger } = p
  return new ReturnPathListener({
    config,
    tokens: p.returnPath,
    events: p.events,
    log,
    clock: p.clock,
    tls: () => serverTlsOptions(loadTlsMaterial(config, log), config.submission.tls.minVersion),
    onRead: async (id) => (({ read: 'ended', 'not-awaiting': 'final', 'not-evidence': 'not-evidence' }) as const)[await delivery.read(id, 'mdn')],
    onBounced: ({ id, hard, reason }) => delivery.returnedBounce(id, hard, reason),
    notify: async (n) => {
      const facts = await ledger.statementFacts(n.id).catch(() => undefined)
      await delivery.notifyReturned({ ...n, statementId: facts?.statementId, rcpt: n.address, arrivedAt: facts?.acceptedAt ?? Date.now() })
    },
  })
}

/** S7: the delivery keys an approved change puts in force at once (the engine rebuilds routes, budget and rates). */
const DELIVERY_LIVE_KEYS = LIVE_KEYS.filter((k) => k.startsWith('delivery.'))

/** What ConfigVersions records at the first start: the file given, or the embedded defaults when the box has no version yet. */
function givenConfig(starting: BoxDeps['starting']) {
  if (!starting) return undefined
  if (starting.path) return { raw: starting.raw, from: `file ${resolve(starting.path)}` }
  return starting.fromVersion === undefined ? { raw: {}, from: 'the embedded defaults' } : undefined
}

type Parts = Omit<Box, 'control' | 'accounts' | 'admin' | 'daemon' | 'stops'>

/** The operator's side: the control socket (status, removal, console accounts), the admin page and its change control (S3–S12). */
function buildOperator(p: Parts, deps: BoxDeps, clock: Clock) {
  const { config, log, events, hsm, spool, delivery, versions } = p
  const stops = new EventEmitter<{ stop: [why: string, code: number] }>()
  const control = new ControlServer({
    config,
    log,
    spool,
    events,
    // Read at each request: the admin page, made below (it serves through this socket), is there by then.
    status: statusReport(() => ({ ...p, startedAt, returnPath: p.returns, tracking: p.tracker, policy: p.chain.policy, admin })),
    remove: (id, who, reason) => delivery.remove(id, who, reason),
    // The recent 250-to-journal windows themselves (ms), for the reliability suite's percentiles.
    views: {
      'delivery.journal-lag': () => Promise.resolve(delivery.journalLag.values()),
      'spool.journal-writes': () => Promise.resolve(spool.journalWrites.recentWrites()),
      'spool.journal-line-writes': () => Promise.resolve(spool.journalWrites.lineWrites.values()),
    },
  })
  const startedAt = new Date().toISOString()
  // S5, S7: changes proposed and approved on the admin page; the live keys take effect at once, the rest at the next start.
  const proposals = new Proposals({
    dataDir: config.dataDir,
    versions,
    clock,
    events,
    expiryHours: config.admin.proposalExpiryHours,
    allowSelfApproval: config.admin.allowSelfApproval,
  })
  const metrics = boxMetrics(p, clock)
  const accounts = new Accounts({
    dataDir: config.dataDir,
    hsm: hsm.hsm,
    clock,
    events,
    dormant: { days: config.admin.dormantDays, disable: config.admin.disableDormant },
  })
  const admin: AdminServer = new AdminServer({
    config,
    log,
    events,
    clock,
    accounts,
    metrics,
    control,
    tls: () => adminTlsOptions(config, log),
    auditDir: join(config.dataDir, 'audit'),
    recipientHash: (address) => recipientHash(hsm.hsm, address),
    system: new SystemInfo({ dataDir: config.dataDir, clock }),
    firmware: () => p.update.view(),
    firmwareKeys: () => p.update.trustedKeys(),
    changeControl: {
      versions,
      proposals,
      apply: (next) => p.store.set(next),
      backup: namedBackup({ config, hsm: hsm.hsm, versionsDir: versions.dir, hostname: hostname(), verify: () => versions.verifyAll() }),
      // Under systemd (it sets INVOCATION_ID): a graceful stop with EX_TEMPFAIL, which the unit's RestartForceExitStatus starts again.
      restart: { supervised: Boolean(deps.env?.INVOCATION_ID), run: (who, reason) => stops.emit('stop', `restart asked by ${who}: ${reason}`, EX_TEMPFAIL) },
    },
    records: {
      ledger: () => (config.reports.enabled ? p.ledger.store : undefined),
      checkpointKey: () => hsm.hsm.keys.publicKey(CHECKPOINT_KEY_LABEL),
      tlsCertificate: () => (config.admin.tls.certFile ? readFileSync(config.admin.tls.certFile, 'utf8') : loadTlsMaterial(config, log).cert),
    },
  })
  // #31: root at the console reaches the accounts through the control socket (npm run account).
  control.addActions(
    Object.fromEntries(
      CONSOLE_ACCOUNT_COMMANDS.map((cmd) => [
        cmd,
        (args: Record<string, unknown>, who: string) =>
          consoleAccountAction(accounts, cmd, args, who).catch((err: unknown) => {
            throw err instanceof AccountError ? new Refused(err.message) : err
          }),
      ]),
    ),
  )
  return { control, admin, accounts, metrics, stops }
}

/** S3, S11: the counts behind the admin page's charts and /metrics. */
function boxMetrics(p: Parts, clock: Clock): BoxMetrics {
  const { spool, delivery, hsm, config } = p
  return new BoxMetrics({
    clock,
    levels: {
      queue: () => spool.stats(),
      oldestQueued: () => spool.oldestCreated(),
      bytesOut: () => delivery.limiter.passed,
      bytesByEgress: () => delivery.egress.bytesSent(),
      capBitsPerSecond: () => p.store.current.delivery.bandwidthBitsPerSecond,
      hsm: () => {
        const last = hsm.last
        return last && { up: !last.error && last.keys.every((k) => k.present), certificates: last.certificates }
      },
      dataDisk: () => {
        const fs = statfsSync(config.dataDir)
        return { free: fs.bavail * fs.bsize, total: fs.blocks * fs.bsize }
      },
    },
  })
}

/** What a person at the console sees once the box serves: where it listens, and (S8) the first administrator's setup code. */
export function startBanner(box: Box): string {
  const { starttls, implicitTls } = box.submission.endpoints
  const returnsUp = box.returns.listening ? box.returns.address : undefined
  const setupCode = box.admin.url && !box.accounts.hasAdmin() ? box.accounts.pendingSetupCode() : undefined
  return (
    `Statement Gateway is running (pid ${process.pid}, data in ${box.config.dataDir})\n` +
    `  submission STARTTLS     ${starttls.host}:${starttls.port}\n` +
    `  submission implicit TLS ${implicitTls.host}:${implicitTls.port}\n` +
    (returnsUp ? `  return path (bounces)   ${returnsUp.host}:${returnsUp.port}\n` : '') +
    (box.admin.url ? `  admin page              ${box.admin.url}\n` : '') +
    (setupCode
      ? `First administrator: open the admin page and enter the one-time setup code ${setupCode}\n  (valid 24 h, once; also in ${box.accounts.setupCodeFile})\n`
      : '') +
    `Stop it with Ctrl-C.\n`
  )
}
