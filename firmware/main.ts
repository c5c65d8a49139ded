import { AccountError, Accounts } from './admin/accounts.ts'
import { CONSOLE_ACCOUNT_COMMANDS, consoleAccountAction } from './admin/console.ts'
import { BoxMetrics } from './admin/metrics.ts'
import { SystemInfo } from './admin/system.ts'
import { AdminServer, adminTlsOptions } from './admin/server.ts'
import { recipientHash } from './audit/redact.ts'
import { loadTlsMaterial, serverTlsOptions } from './submission/tls.ts'
import { ReturnPathListener } from './bounces/listener.ts'
import { ReadReceiptStage } from './bounces/receipts.ts'
import { ReturnPathTokens } from './bounces/verp.ts'
import { mkdirSync, readFileSync, statfsSync } from 'node:fs'
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { systemClock } from '../hal/clock.ts'
import { boxRunning, ControlServer, Refused } from './control/server.ts'
import { ConfigError, configPathFrom, parseConfig, readConfigFile, type Config } from './config/load.ts'
import { Proposals } from './config/proposals.ts'
import { canonicalJson, ConfigTamperError, ConfigVersions, startingConfig } from './config/versions.ts'
import { collectBackup, sealBackup } from './control/backup.ts'
import { Daemon } from './daemon.ts'
import { ServiceNotifier } from './notify.ts'
import { UpdateAgent } from './update/agent.ts'
import { GatewayError } from './errors.ts'
import { missingDaemonEnv } from './runtime.ts'
import { createLogger, type Logger } from './log.ts'
import { KeyService } from './keys/service.ts'
import { CHECKPOINT_KEY_LABEL, CONFIG_VERSION_LABEL } from './keys/labels.ts'
import { AuditCopyHandoff } from './delivery/audit-copy.ts'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { DeliveryEngine } from './delivery/engine.ts'
import { Ledger } from './reports/ledger.ts'
import { WebhookSender } from './reports/webhooks.ts'
import { TrackingTokens } from './reports/tokens.ts'
import { TrackingListener, TrackingStage } from './reports/tracking.ts'
import { ConfigChangeAudit } from './audit/config-change.ts'
import { AuditTrail } from './audit/trail.ts'
import { SyslogForwarder } from './audit/syslog.ts'
import { EventHub, LogEventSink } from './events.ts'
import { StagedHandoff } from './pipeline/stage.ts'
import { PolicyStage } from './policy/stage.ts'
import { SigningStage } from './signing/stage.ts'
import { Spool } from './spool/spool.ts'
import { SubmissionServer } from './submission/server.ts'

/** sysexits.h EX_CONFIG: systemd and IT scripts can tell a bad config from a crash. */
const EX_CONFIG = 78
/** sysexits.h EX_TEMPFAIL: try again later (another box holds the data directory). */
const EX_TEMPFAIL = 75
const REQUIRED_NODE_MAJOR = 24

/**
 * The daemon: load and validate the config, start the components, and on
 * SIGTERM/SIGINT stop accepting, finish in-flight transactions and exit 0.
 * A second signal forces exit.
 */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<void> {
  const major = Number(process.versions.node.split('.')[0])
  if (major !== REQUIRED_NODE_MAJOR) {
    process.stderr.write(
      `statement-gateway: needs Node ${REQUIRED_NODE_MAJOR} LTS (the project's pinned runtime), running ${process.version}; start it with npm start\n`,
    )
    process.exit(1)
  }

  let config: Config
  const configPath = configPathFrom(argv, env)
  let rawConfig: unknown
  let startingVersion: number | undefined
  try {
    rawConfig = readConfigFile(configPath)
    // S7: the version in force, unless the file given is new since it was last imported.
    const starting = startingConfig(parseConfig(rawConfig).dataDir, configPath ? { raw: rawConfig } : undefined)
    startingVersion = starting.fromVersion
    config = parseConfig(starting.raw)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`statement-gateway: configuration error: ${err.message}\n`)
      process.exit(EX_CONFIG)
    }
    throw err
  }

  const log = createLogger(config.log.level)
  const missing = missingDaemonEnv(env)
  if (missing.length)
    log.warn(
      { missing },
      'started without the memory settings npm start and the systemd unit give: under load the process keeps freed mail buffers (firmware/runtime.ts)',
    )
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 })
  // Two boxes on one data directory would write the same spool and audit trail.
  if (await boxRunning(config)) {
    process.stderr.write(`statement-gateway: ${config.dataDir} is in use by a running box (or, for a moment, an admin tool writing its audit trail)\n`)
    process.exit(EX_TEMPFAIL)
  }

  // Every event goes to the log (recipients masked) and to the audit trail (S6).
  const events = new EventHub([new LogEventSink(log)])
  const hsm = new KeyService({ config, log, clock: systemClock, events })
  const audit = new AuditTrail({ config, log, hsm: hsm.hsm, clock: systemClock })
  events.add(audit)
  const syslog = new SyslogForwarder({ config, log, trail: audit })
  // M9: the statement ledger, a view of the trail kept current from it.
  const ledger = new Ledger({ config, log, trail: audit, events, clock: systemClock })
  const webhooks = new WebhookSender({ config, log, hsm: hsm.hsm, ledger, events, clock: systemClock })
  const spool = new Spool({ config, log, hsm: hsm.hsm, events, clock: systemClock })
  const signing = new SigningStage({ config, log, hsm: hsm.hsm, clock: systemClock, events })
  const policy = new PolicyStage({ config, log, events })
  // M9: opens and clicks, when a profile asks for them; the rewrite comes before signing so both signatures cover it.
  const tracking = new TrackingTokens(hsm.hsm)
  const tracker = new TrackingListener({ config, tokens: tracking, events, log, onRead: (id, evidence) => delivery.read(id, evidence) })
  const returnPath = new ReturnPathTokens(hsm.hsm)
  const handoff = new StagedHandoff(
    [policy, new TrackingStage({ config, tokens: tracking, log }), new ReadReceiptStage({ config, tokens: returnPath }), signing],
    new AuditCopyHandoff(spool, config),
  )
  // S6: a mail is taken only while the trail can record what happens to it (a full disk holds
  // its records in memory, bounded: submission waits rather than the trail losing any).
  const admit = () =>
    audit.accepting ? undefined : new GatewayError('EAUDIT_BACKLOG', `the audit trail has ${audit.backlog} records waiting to be written; try again later`)
  const submission = new SubmissionServer({ config, log, handoff, clock: systemClock, events, admit })
  const delivery = new DeliveryEngine({ config, log, spool, events, clock: systemClock, returnPath, trail: audit })
  const returns = new ReturnPathListener({
    config,
    tokens: returnPath,
    events,
    log,
    clock: systemClock,
    tls: () => serverTlsOptions(loadTlsMaterial(config, log), config.submission.tls.minVersion),
    onRead: async (id) => (({ read: 'ended', 'not-awaiting': 'final', 'not-evidence': 'not-evidence' }) as const)[await delivery.read(id, 'mdn')],
    onBounced: ({ id, hard, reason }) => delivery.returnedBounce(id, hard, reason),
    notify: async (n) => {
      const facts = await ledger.statementFacts(n.id).catch(() => undefined)
      await delivery.notifyReturned({ ...n, statementId: facts?.statementId, rcpt: n.address, arrivedAt: facts?.acceptedAt ?? Date.now() })
    },
  })
  // Stopped in reverse: the trail records the others' last events, then signs a final checkpoint while the HSM is still open.
  const startedAt = new Date().toISOString()
  // #33: the box's own measure of how long its event loop was held up (a 250 not read, a timer late), since it started serving.
  const loopDelay = monitorEventLoopDelay({ resolution: 10 })
  loopDelay.enable()
  /** The admin page's client faults, for status (the page is made after the control socket it serves). */
  const adminClientErrors: { counts: Record<string, number> } = { counts: {} }
  const control = new ControlServer({
    config,
    log,
    spool,
    events,
    // What an operator checks first (npm run status): queue, delivery, policy hits, HSM and certificates.
    status: async () => ({
      pid: process.pid,
      node: process.version,
      startedAt,
      spool: spool.stats(),
      // S11: the process's memory and what mail in flight holds of its budget.
      memory: { ...process.memoryUsage(), submission: submission.memory },
      submission: { ...submission.guardCounts, auditBacklog: audit.backlog },
      // #29: what clients on the other listeners cost: their faults by kind, the return path's memory.
      returnPath: returns.counts,
      admin: { clientErrors: adminClientErrors.counts },
      tracking: { clientErrors: tracker.clients.counts },
      delivery: {
        ...delivery.counts,
        inFlight: delivery.inFlight,
        journalLagMs: delivery.journalLag.summary(),
        // #33: what the journal's stamps leave out: a group's stamp to its write returning durable.
        journalWriteMs: spool.journalWrites.writes.summary(),
        paused: delivery.egress.paused().map((p) => ({ ...p, until: new Date(p.until).toISOString() })),
      },
      policy: Object.fromEntries(policy.counters),
      hsm: await hsm.check(),
      eventLoop: { maxMs: Math.round(loopDelay.max / 1e5) / 10, p99Ms: Math.round(loopDelay.percentile(99) / 1e5) / 10 },
    }),
    remove: (id, who, reason) => delivery.remove(id, who, reason),
    // The recent 250-to-journal windows themselves (ms), for the reliability suite's percentiles.
    views: {
      'delivery.journal-lag': () => Promise.resolve(delivery.journalLag.values()),
      'spool.journal-writes': () => Promise.resolve(spool.journalWrites.recentWrites()),
    },
  })
  const configVersions = new ConfigVersions({
    dataDir: config.dataDir,
    mac: (data) => hsm.hsm.keys.hmac(CONFIG_VERSION_LABEL, data),
    clock: systemClock,
    events,
    log,
    given: configPath
      ? { raw: rawConfig, from: `file ${resolve(configPath)}` }
      : startingVersion === undefined
        ? { raw: {}, from: 'the embedded defaults' }
        : undefined,
  })
  // S5, S7: changes proposed and approved on the admin page; the policy takes a change at once, the rest at the next start.
  const proposals = new Proposals({
    dataDir: config.dataDir,
    versions: configVersions,
    clock: systemClock,
    events,
    expiryHours: config.admin.proposalExpiryHours,
    allowSelfApproval: config.admin.allowSelfApproval,
  })
  const applyConfig = async (next: Config, previous: Config) => {
    if (canonicalJson(next.policy) !== canonicalJson(previous.policy)) await policy.reconfigure(next)
    const changed = (pick: (c: Config) => unknown) => canonicalJson(pick(next)) !== canonicalJson(pick(previous))
    if (changed((c) => [c.submission.accounts, c.submission.allowFrom])) submission.reconfigure(next)
    if (changed((c) => c.delivery)) await delivery.reconfigure(next)
  }

  /** A graceful stop with an exit code (the signal handlers' and the admin page's restart); set once the daemon exists. */
  let stopBox: (why: string, code: number) => void = () => undefined

  // S3–S6, S11: the admin page, its accounts, and the counts behind its charts and /metrics.
  const metrics = new BoxMetrics({
    clock: systemClock,
    levels: {
      queue: () => spool.stats(),
      oldestQueued: () => spool.oldestCreated(),
      bytesOut: () => delivery.limiter.passed,
      bytesByEgress: () => delivery.egressBytes(),
      capBitsPerSecond: () => config.delivery.bandwidthBitsPerSecond,
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
  events.add(metrics)
  hsm.hsm.keys.onSign = (seconds) => metrics.observeSign(seconds)
  const accounts = new Accounts({
    dataDir: config.dataDir,
    hsm: hsm.hsm,
    clock: systemClock,
    events,
    dormant: { days: config.admin.dormantDays, disable: config.admin.disableDormant },
  })
  const admin = new AdminServer({
    config,
    log,
    events,
    clock: systemClock,
    accounts,
    metrics,
    control,
    tls: () => adminTlsOptions(config, log),
    auditDir: join(config.dataDir, 'audit'),
    recipientHash: (address) => recipientHash(hsm.hsm, address),
    system: new SystemInfo({ dataDir: config.dataDir, clock: systemClock }),
    firmware: () => update.view(),
    firmwareKeys: () => update.trustedKeys(),
    changeControl: {
      versions: configVersions,
      proposals,
      apply: applyConfig,
      // S12: only checked versions go into a backup.
      backup: async (passphrase) => {
        await configVersions.verifyAll()
        const payload = await collectBackup({ config, hsm: hsm.hsm, versionsDir: configVersions.dir, hostname: hostname(), now: Date.now() })
        const file = `sg-config-${hostname()}-${payload.createdAt.slice(0, 10)}.sgbk`
        return {
          file,
          bundle: sealBackup(payload, passphrase),
          detail: `version ${payload.inForce}: ${payload.versions.length} versions, ${payload.files.length} files, ${payload.hsm.keys.length} HSM labels`,
        }
      },
      // Under systemd (it sets INVOCATION_ID): a graceful stop with EX_TEMPFAIL, which the unit's RestartForceExitStatus starts again.
      restart: { supervised: Boolean(env.INVOCATION_ID), run: (who, reason) => stopBox(`restart asked by ${who}: ${reason}`, EX_TEMPFAIL) },
    },
    records: {
      ledger: () => (config.reports.enabled ? ledger.store : undefined),
      checkpointKey: () => hsm.hsm.keys.publicKey(CHECKPOINT_KEY_LABEL),
      tlsCertificate: () => (config.admin.tls.certFile ? readFileSync(config.admin.tls.certFile, 'utf8') : loadTlsMaterial(config, log).cert),
    },
  })
  adminClientErrors.counts = admin.clients.counts
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
  // ETSI 5.3: a version on trial checks itself once everything runs, and commits; update steps reach the trail.
  const update = new UpdateAgent({
    firmwareDir: import.meta.dirname,
    events,
    log,
    selfTest: async () => {
      const h = await hsm.check()
      if (h.error || h.keys.some((k) => !k.present))
        return `the HSM is not ready: ${
          h.error ??
          h.keys
            .filter((k) => !k.present)
            .map((k) => k.label)
            .join(', ')
        }`
      await configVersions.verifyAll()
      spool.stats()
      if (!submission.endpoints.starttls.port) return 'submission is not listening'
      return audit.accepting ? undefined : 'the audit trail is not accepting records'
    },
  })
  const daemon = new Daemon(
    [
      hsm,
      audit,
      // S7, S9: the configuration as HMAC-checked versions; a version edited on disk stops the start here.
      configVersions,
      new ConfigChangeAudit({ config, trail: audit, version: () => configVersions.inForce() }),
      syslog,
      ledger,
      webhooks,
      tracker,
      returns,
      spool,
      policy,
      signing,
      delivery,
      control,
      admin,
      submission,
      update,
    ],
    log,
  )

  // systemd (Type=notify): READY once everything listens, watchdog pings from the event loop, STOPPING at a stop.
  const notifier = new ServiceNotifier({ env, log })
  stopBox = installSignalHandlers(daemon, log, () => notifier.stopping())
  try {
    await daemon.start()
  } catch (err) {
    log.flush()
    // The log has it as JSON; a person at the console reads it here.
    process.stderr.write(`statement-gateway: not started: ${(err as Error).message}\n`)
    process.exitCode = err instanceof ConfigTamperError ? EX_CONFIG : 1
    return
  }
  const { starttls, implicitTls } = submission.endpoints
  // S8: while no administrator exists, the pending setup code is shown at every start.
  const setupCode = admin.url && !accounts.hasAdmin() ? accounts.pendingSetupCode() : undefined
  const returnsUp = returns.listening ? returns.address : undefined
  // What the start itself held up (loading, opening the spool) is not a stall in service.
  loopDelay.reset()
  log.info({ dataDir: config.dataDir, pid: process.pid }, 'statement gateway started')
  notifier.ready(`submission on ${starttls.host}:${starttls.port} and ${implicitTls.port}; ${spool.stats().total} queued`)
  process.stderr.write(
    `Statement Gateway is running (pid ${process.pid}, data in ${config.dataDir})\n` +
      `  submission STARTTLS     ${starttls.host}:${starttls.port}\n` +
      `  submission implicit TLS ${implicitTls.host}:${implicitTls.port}\n` +
      (returnsUp ? `  return path (bounces)   ${returnsUp.host}:${returnsUp.port}\n` : '') +
      (admin.url ? `  admin page              ${admin.url}\n` : '') +
      (setupCode
        ? `First administrator: open the admin page and enter the one-time setup code ${setupCode}\n  (valid 24 h, once; also in ${accounts.setupCodeFile})\n`
        : '') +
      `Stop it with Ctrl-C.\n`,
  )
}

/** SIGTERM/SIGINT stop the box gracefully (a second one forces exit); returns the same stop for other callers, with their exit code. */
function installSignalHandlers(daemon: Daemon, log: Logger, onStop: () => void): (why: string, code: number) => void {
  let stopping = false
  const stop = (why: string, code: number) => {
    if (stopping) {
      log.warn({ why }, 'second stop: forcing exit')
      log.flush()
      process.exit(1)
    }
    stopping = true
    onStop()
    log.info({ why }, 'stopping: no new connections, finishing transactions in flight')
    daemon.stop().then(
      () => {
        log.info({ exitCode: code }, 'stopped')
        log.flush(() => process.exit(code))
      },
      (err: unknown) => {
        log.error({ err }, 'stop failed')
        log.flush(() => process.exit(1))
      },
    )
  }
  process.on('SIGTERM', (signal) => stop(signal, 0))
  process.on('SIGINT', (signal) => stop(signal, 0))
  return stop
}

if (import.meta.main) {
  await main(process.argv.slice(2), process.env)
}
