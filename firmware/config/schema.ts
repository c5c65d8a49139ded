import { admin } from './sections/admin.ts'
import { delivery } from './sections/delivery.ts'
import { policy } from './sections/policy.ts'
import { reports } from './sections/reports.ts'
import { returnPath } from './sections/return-path.ts'
import { signing } from './sections/signing.ts'
import { submission } from './sections/submission.ts'
import { port } from './sections/fields.ts'
import { bool, int, obj, oneOf, str, type Infer } from './types.ts'

/**
 * The box's whole configuration: one schema, a default and a description per
 * key. Defaults are the embedded development defaults (data in ./var, loopback
 * addresses, unprivileged ports); provisioning writes the appliance's values.
 *
 * The reference in docs/configuration.md is generated from this file
 * (`npm run config-reference`), and a test keeps the two in step.
 */

/**
 * The configuration's schema version. A change that old files cannot simply be
 * read under (a key renamed or moved) raises it, with a written migration
 * (migrations.ts). 2: `admin.listen`.
 */
export const SCHEMA_VERSION = 2

/**
 * S7: the keys an approved change puts in force at once, without a restart (each
 * component is handed the new configuration and may refuse it, which rolls the
 * change back). Every other key — listen addresses, the data directory, the HSM,
 * connection limits, the return path, the admin page itself — applies at the next
 * start; the admin page says so and offers a graceful restart.
 */
export const LIVE_KEYS = [
  'policy',
  'submission.accounts',
  'submission.allowFrom',
  'delivery.egress',
  'delivery.routes',
  'delivery.requireTls',
  'delivery.smtpPort',
  'delivery.bandwidthBitsPerSecond',
  'delivery.burstBytes',
  'delivery.perDestinationMessagesPerSecond',
  'delivery.messagesPerConnection',
  'delivery.retrySeconds',
  'delivery.maxAgeSeconds',
  'delivery.blockPauseSeconds',
  'delivery.throttlePauseSeconds',
  'delivery.timeouts',
  'delivery.notifyAddress',
] as const

/** Whether a change to `key` (dotted, as in the reference) takes effect at once. */
export const appliesAtOnce = (key: string): boolean => LIVE_KEYS.some((k) => key === k || key.startsWith(`${k}.`) || key.startsWith(`${k}[`))

export const schema = obj({
  schemaVersion: int({
    default: SCHEMA_VERSION,
    min: 1,
    max: SCHEMA_VERSION,
    description:
      `Version of this configuration's schema (${SCHEMA_VERSION} for this firmware). An older one is migrated forward at load, step by step ` +
      '(absent: 1); a file from newer firmware is refused rather than read wrongly.',
  }),
  dataDir: str({
    default: './var',
    nonEmpty: true,
    description: 'Data directory: TLS material, spool, audit trail, SoftHSM token. `/var/lib/statement-gateway` on the appliance.',
  }),
  log: obj({
    level: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const, {
      default: 'info',
      description: 'Minimum level written to the JSON log on stdout.',
    }),
  }),
  submission,
  hsm: obj({
    module: str({
      default: '',
      description:
        "PKCS#11 module of the HSM (the vendor's .so). Empty: the embedded SoftHSM2 token in `<dataDir>/hsm`, created on first start with a random PIN (M6).",
    }),
    moduleParameters: str({
      // #38: NSS softokn needs its database directory this way (`configdir='sql:/var/lib/…' flags=`); most modules need nothing.
      default: '',
      pattern: /^[^\0\r\n]{0,1024}$/,
      description:
        "Initialisation string some PKCS#11 modules read at C_Initialize (pReserved), for example NSS softokn's `configdir='sql:<dir>' certPrefix='' " +
        "keyPrefix='' secmod='secmod.db' flags=`. Empty for SoftHSM and most vendors' modules.",
    }),
    tokenLabel: str({
      default: 'statement-gateway',
      nonEmpty: true,
      pattern: /^.{1,32}$/,
      description: "Label of the token holding the box's keys (at most 32 bytes).",
    }),
    pinFile: str({
      default: '',
      description: 'File with the token user PIN, mode 0600 (never the PIN itself in config). Required with `module`; empty for the embedded token.',
    }),
    sessions: int({ default: 4, min: 1, max: 64, description: 'PKCS#11 sessions kept open; concurrent signing uses one each.' }),
    reconnectIntervalMs: int({
      // #33: a token back is in use, logged and in `status` within 2 s of its return even between two attempts.
      default: 1000,
      min: 100,
      max: 600000,
      description: 'After the token goes away, wait at least this long between reconnection attempts.',
    }),
    healthCheckMs: int({ default: 30000, min: 1000, max: 3600000, description: 'How often the box checks the token and logs state changes (S11).' }),
    certificateWarnDays: int({
      default: 30,
      min: 1,
      max: 365,
      description:
        'Days before a signing certificate expires from which the box warns once a day in the log and the audit trail (an expired one refuses every ' +
        'statement it should sign).',
    }),
  }),
  policy,
  signing,
  spool: obj({
    epochSeconds: int({
      default: 3600,
      min: 1,
      max: 7 * 86400,
      description:
        'Length of a key epoch (S13): each epoch has its own key in the HSM (which wraps the data key every record of the epoch derives its own ' +
        'from), destroyed when the epoch has ended and its last message is final.',
    }),
    reservePercent: int({
      default: 10,
      min: 0,
      max: 90,
      description: 'Free disk space kept in reserve: below it, submission answers 452 4.3.1 instead of accepting.',
    }),
    maxMessages: int({ default: 3_000_000, min: 1, max: 50_000_000, description: 'Most messages the spool holds; beyond it submission answers 452 4.3.1.' }),
    alarmPercent: int({
      default: 80,
      min: 1,
      max: 100,
      description:
        'S11: when the queue reaches this share of `maxMessages`, or free disk falls within twice `reservePercent`, the box raises an alarm (log and ' +
        'audit trail, at most hourly) before submissions start to be refused.',
    }),
    verifyOnStart: bool({ default: true, description: 'After start, read and authenticate every record in the background; bad ones are quarantined.' }),
  }),
  delivery,
  reports,
  returnPath,
  admin,
  audit: obj({
    checkpointEvery: int({
      default: 1000,
      min: 1,
      max: 1_000_000,
      description: 'A checkpoint (sequence, chain head, time) signed by the HSM key `audit/checkpoint-signing` after this many records (S6).',
    }),
    checkpointSeconds: int({ default: 60, min: 1, max: 86400, description: 'A checkpoint at least this often while records are being written.' }),
    flushMs: int({ default: 50, min: 0, max: 5000, description: "Records are written and fsync'd in groups at most this far apart." }),
    maxBacklog: int({
      default: 100000,
      min: 100,
      max: 10000000,
      description:
        'Records that may wait in memory to be written (e.g. while the disk is full); at this many, or while writes fail, submission answers 452 4.3.1 ' +
        'EAUDIT_BACKLOG so nothing goes unrecorded and memory stays bounded.',
    }),
    retentionDays: int({
      default: 1827,
      min: 1,
      max: 36500,
      description: 'Days a daily segment is kept (five years by default, as the securities rules require); older segments are deleted at rotation.',
    }),
    diskBudgetBytes: int({
      default: 50 * 1024 ** 3,
      min: 1024 * 1024,
      max: 2 ** 50,
      description: 'Disk the trail may use; above it the box raises an alarm (log and audit event) but keeps recording.',
    }),
    syslog: obj({
      host: str({ default: '', description: 'SIEM host receiving the trail as RFC 5424 syslog over TLS (RFC 5425); empty: no forwarding.' }),
      port: port('SIEM syslog-over-TLS port.', 6514),
      caFile: str({ default: '', description: "PEM CA certificates for the SIEM's certificate; empty: the system store." }),
      serverName: str({ default: '', description: "Name expected in the SIEM's certificate; empty: `host`." }),
      hostname: str({ default: 'statement-gateway', nonEmpty: true, description: 'HOSTNAME field of each syslog message.' }),
      replayOverlap: int({
        default: 1000,
        min: 0,
        max: 1_000_000,
        description:
          'After a broken connection, records resent from before the last one written (TCP cannot tell what arrived); each carries its sequence number ' +
          'so the SIEM can drop duplicates.',
      }),
      retrySeconds: int({
        default: 10,
        min: 1,
        max: 3600,
        description: 'Wait between connection attempts while the SIEM is unreachable; the trail itself is the buffer, so nothing is lost meanwhile.',
      }),
    }),
  }),
  shutdown: obj({
    graceMs: int({
      default: 30000,
      min: 0,
      max: 600000,
      description: 'On SIGTERM/SIGINT, how long in-flight transactions may take to finish before connections are closed.',
    }),
  }),
})

export type Config = Infer<typeof schema>
