import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { cidrProblem } from '../../hal/net/cidr.ts'
import { patternProblem } from './patterns.ts'
import { passwordHashProblem } from '../../hal/crypto/password.ts'
import { bool, int, list, obj, oneOf, records, str, type Infer } from './types.ts'

/**
 * The box's whole configuration: one schema, a default and a description per
 * key. Defaults are the embedded development defaults (data in ./var, loopback
 * addresses, unprivileged ports); provisioning writes the appliance's values.
 *
 * The reference in README.md is generated from this file
 * (`npm run config-reference`), and a test keeps the two in step.
 */

const cidr = (description: string, def: string[]) =>
  list(str({ default: '', description: '', check: cidrProblem, typeName: 'CIDR' }), { default: def, description })

const port = (description: string, def: number) => int({ default: def, min: 0, max: 65535, description })

const mode = (def: 'off' | 'monitor' | 'enforce', rule: string) =>
  oneOf(['off', 'monitor', 'enforce'] as const, {
    default: def,
    description: `${rule} Mode: \`enforce\` refuses with the rule's code, \`monitor\` accepts and records the hit, \`off\`.`,
  })

/** True when `path` can be read and holds at least one PEM certificate. */
function pemCertificates(path: string): boolean {
  try {
    return readFileSync(path, 'utf8').includes('-----BEGIN CERTIFICATE-----')
  } catch {
    return false
  }
}

export const schema = obj({
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
  submission: obj({
    hostname: str({
      default: 'localhost',
      nonEmpty: true,
      description: 'Name the submission service announces in its greeting and puts in its self-made TLS certificate.',
    }),
    host: str({ default: '127.0.0.1', nonEmpty: true, description: 'Address both submission listeners bind to (`::` for all).' }),
    starttlsPort: port('Port for submission with STARTTLS (RFC 6409). 587 on the appliance; 0 picks a free port.', 2587),
    implicitTlsPort: port('Port for submission over implicit TLS (RFC 8314). 465 on the appliance; 0 picks a free port.', 2465),
    tls: obj({
      certFile: str({
        default: '',
        description: 'PEM certificate chain for submission TLS. Empty: the box makes its own key and certificate in `<dataDir>/tls/` on first start.',
      }),
      keyFile: str({ default: '', description: 'PEM private key matching `certFile` (readable by the box only).' }),
      minVersion: oneOf(['TLSv1.2', 'TLSv1.3'] as const, {
        default: 'TLSv1.2',
        description: 'Lowest TLS version accepted (S1: TLS 1.2 or higher).',
      }),
    }),
    requireTls: bool({
      default: true,
      description: 'Refuse MAIL FROM on a connection that has not started TLS, even from trusted networks.',
    }),
    maxMessageBytes: int({
      default: 30 * 1024 * 1024,
      min: 1024,
      max: 200 * 1024 * 1024,
      description: 'Largest message accepted, announced in EHLO SIZE (RFC 1870) and enforced with 552 5.3.4.',
    }),
    maxClients: int({ default: 200, min: 1, max: 100000, description: 'Concurrent client connections per listener.' }),
    maxClientsPerAddress: int({
      default: 32,
      min: 1,
      max: 100000,
      description:
        'Connections one client address may hold open on a listener, counted from the TCP accept (before TLS), so one host cannot fill `maxClients` ' +
        'for everyone (slow-loris); over it: 421 4.7.0 ECLIENT_TOO_MANY. Raise it for a statement system that really opens more in parallel.',
    }),
    authTimeoutMs: int({
      default: 20000,
      min: 1000,
      max: 600000,
      description:
        'Time from connecting to being authenticated (or, from a trusted network, to MAIL FROM); a client that has not made it by then is ' +
        'disconnected. TLS handshake included.',
    }),
    memoryBudgetBytes: int({
      default: 1024 * 1024 * 1024,
      min: 16 * 1024 * 1024,
      max: 2 ** 40,
      description:
        "Memory for mail being received, checked and signed, counted at four times each message's size (the copies those steps make). While it is " +
        'spent, new transactions get 452 4.3.1 ESUBMISSION_BUSY and a message that would overrun it is read to its end without being kept; the client ' +
        "retries. Bounds the box's memory whatever clients send.",
    }),
    socketTimeoutMs: int({ default: 60000, min: 1000, max: 600000, description: 'Idle time after which a client connection is closed.' }),
    bareLineFeed: oneOf(['reject', 'normalize'] as const, {
      default: 'reject',
      description:
        'A bare CR or LF in DATA: `reject` answers 550 5.5.2; `normalize` turns it into CRLF. Either way the message is never split (SMTP smuggling).',
    }),
    traceClient: oneOf(['hidden', 'name', 'name-and-address'] as const, {
      default: 'hidden',
      description:
        'What the Received header the box adds to each mail (RFC 5321 §4.4) says about the submitting system: nothing (`hidden`, the default: its host ' +
        'name and address are inside the firm and would travel to every customer), its EHLO name, or name and IP address. The header always names the ' +
        'box and the queue id.',
    }),
    allowFrom: cidr('Global client allowlist (S8). A client outside it gets 554 5.7.1 at connect. Empty refuses everyone.', ['127.0.0.0/8', '::1/128']),
    trustedNetworks: cidr(
      'Clients here may submit without AUTH (like Postfix `mynetworks`), for legacy statement systems. Off (empty) by default; still subject to `allowFrom`.',
      [],
    ),
    accounts: records(
      {
        name: str({ default: '', nonEmpty: true, pattern: /^[A-Za-z0-9._@-]{1,64}$/, description: 'Login name.' }),
        passwordHash: str({ default: '', check: passwordHashProblem, description: 'scrypt hash, never the password.' }),
        allowFrom: cidr('Addresses this account may log in from; empty means any address allowed globally.', []),
      },
      {
        default: [],
        required: ['name', 'passwordHash'],
        description:
          'Submission accounts: `{ "name", "passwordHash", "allowFrom": [CIDR…] }`. Make a hash with `npm run account -- hash` (reads the password ' +
          'from stdin).',
      },
    ),
    authFailures: obj({
      max: int({
        default: 5,
        min: 1,
        max: 1000,
        description: 'Failed AUTH attempts from one address (or for one account) within `windowSeconds` before AUTH is refused for a while.',
      }),
      windowSeconds: int({ default: 900, min: 1, max: 86400, description: 'Window in which failures are counted.' }),
      blockSeconds: int({ default: 900, min: 1, max: 86400, description: 'How long AUTH is refused (454 4.7.0) once the limit is hit.' }),
    }),
  }),
  hsm: obj({
    module: str({
      default: '',
      description:
        "PKCS#11 module of the HSM (the vendor's .so). Empty: the embedded SoftHSM2 token in `<dataDir>/hsm`, created on first start with a random PIN (M6).",
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
      default: 2000,
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
  policy: obj({
    consentCheckSeconds: int({
      default: 30,
      min: 1,
      max: 3600,
      description: 'How often the consent files are checked for a new version (M1: the firm exports them).',
    }),
    inspectionWorkers: int({
      default: 2,
      min: 1,
      max: 64,
      description: 'Worker threads that read and judge submitted mail off the event loop (one per core on the appliance).',
    }),
    inspectionBudgetMs: int({
      default: 10000,
      min: 100,
      max: 600000,
      description:
        "Longest a mail's inspection may take; past it the worker is stopped and the mail answered 451 4.3.0 ETEMPORARY (never accepted unchecked), " +
        'with an event and a counter.',
    }),
    profiles: records(
      {
        name: str({ default: '', nonEmpty: true, description: 'Profile name (in replies and the audit trail).' }),
        accounts: list(str({ default: '', description: '' }), { default: [], description: 'Submission accounts this profile applies to.' }),
        domains: list(str({ default: '', description: '' }), { default: [], description: 'Sender domains this profile applies to.' }),
        senderAlignment: mode('enforce', 'MAIL FROM and the From mailbox must be allowed senders (`allowedSenders`, else `domains`): EPOLICY_SENDER.'),
        allowedSenders: list(str({ default: '', description: '' }), {
          default: [],
          description: 'Domains or addresses MAIL FROM and From may use; empty means `domains`.',
        }),
        subjectLabel: mode('enforce', 'A statement of a class in `labelClasses` must carry `label` in its subject: EPOLICY_SUBJECT.'),
        statementClass: str({ default: '', description: 'Class assumed when a mail has no X-Statement-Class header.' }),
        labelClasses: list(str({ default: '', description: '' }), { default: ['monthly'], description: 'Classes whose subject must carry `label`.' }),
        label: str({ default: '有價證券月對帳單', description: 'Required subject label (M12).' }),
        pdfEncryption: mode(
          'enforce',
          'Every PDF attachment (by type, name or content) must be encrypted: EPOLICY_PDF_UNENCRYPTED, or EPOLICY_PDF_UNREADABLE when it cannot be read.',
        ),
        requirePdf: bool({ default: false, description: 'Refuse a statement without a PDF attachment.' }),
        attachmentTypes: list(str({ default: '', description: '' }), {
          default: ['application/pdf', 'application/zip'],
          description: 'Allowed attachment types; empty allows any.',
        }),
        zipEncryption: mode(
          'enforce',
          'Every ZIP entry must be encrypted, and the archive read alike by every reader: EPOLICY_ZIP_UNENCRYPTED, EPOLICY_ZIP_MALFORMED.',
        ),
        deidentify: mode(
          'enforce',
          'No unmasked Taiwan national ID or resident certificate number (checksum-valid) and nothing matching `patterns` anywhere a person could ' +
            'read: EPOLICY_UNMASKED_ID.',
        ),
        patterns: list(str({ default: '', description: '', check: patternProblem }), {
          default: [],
          description:
            'Extra regular expressions that must not appear (full account numbers…), matched against every text a person could read in the mail. They ' +
            'run on a linear-time engine: no backreferences, lookaround, `i` or `u` flags; write `[Aa]` for a letter in either case.',
        }),
        maxRecipients: int({ default: 1, min: 1, max: 1000, description: 'Recipients per mail (statements are 1:1).' }),
        consentFile: str({
          default: '',
          description:
            'File of addresses with e-statement consent (one per line, or CSV first column); empty for no check. The box rereads it when it changes ' +
            '(after it has stopped changing for `policy.consentCheckSeconds`); an empty or unreadable new file keeps the previous list.',
        }),
      },
      {
        default: [],
        required: ['name'],
        description:
          'Statement policy profiles (M1, M12, M13), chosen by submission account, then by sender domain; a mail matching none is not checked. Rule ' +
          'modes: `enforce` refuses with a 5xx naming the rule, `monitor` accepts and records the hit, `off`. Keys: `name, accounts, domains, ' +
          'senderAlignment, allowedSenders, subjectLabel, statementClass, labelClasses, label, pdfEncryption, requirePdf, attachmentTypes, ' +
          'zipEncryption, deidentify, patterns, maxRecipients, consentFile`.',
      },
    ),
  }),
  signing: obj({
    domains: records(
      {
        domain: str({ default: '', nonEmpty: true, pattern: /^[a-z0-9.-]+$/, description: 'Sender domain (lower case).' }),
        smimeKey: str({ default: '', description: 'HSM label of the S/MIME key and certificate for this domain; empty for none.' }),
        smimeRequired: bool({ default: true, description: 'Refuse mail that cannot be S/MIME-signed.' }),
        smimeAlgorithm: oneOf(['rsa-pkcs1-sha256', 'rsa-pss-sha256', 'ecdsa-p256-sha256'] as const, {
          default: 'rsa-pkcs1-sha256',
          description: 'Signature algorithm.',
        }),
        dkimSelector: str({ default: '', pattern: /^$|^[A-Za-z0-9._-]+$/, description: 'DKIM selector; empty for no DKIM.' }),
        dkimEd25519Selector: str({
          default: '',
          pattern: /^$|^[A-Za-z0-9._-]+$/,
          description: 'Selector of an additional ed25519-sha256 DKIM signature (RFC 8463); empty for none.',
        }),
      },
      {
        default: [],
        required: ['domain'],
        description:
          'Signing per sender domain (M4, M5): `{ "domain", "smimeKey", "smimeRequired": true, "smimeAlgorithm": "rsa-pkcs1-sha256" | "rsa-pss-sha256" ' +
          '| "ecdsa-p256-sha256", "dkimSelector" }`. The S/MIME key and certificate are in the HSM under `smimeKey` (`npm run hsm -- csr` / ' +
          '`import-cert` / `import-p12`); the DKIM key is created in the HSM as `dkim/<domain>/<selector>` at start (`npm run dkim -- dns` prints the ' +
          'record).',
      },
    ),
    senders: records(
      {
        address: str({ default: '', nonEmpty: true, description: 'Sender address (lower case).' }),
        smimeKey: str({ default: '', nonEmpty: true, description: "HSM label of this sender's S/MIME key and certificate." }),
      },
      {
        default: [],
        required: ['address', 'smimeKey'],
        description: 'Per-address S/MIME certificates, used before the domain\'s: `{ "address", "smimeKey" }`.',
      },
    ),
    encryptTo: records(
      {
        address: str({ default: '', nonEmpty: true, description: 'Recipient address (lower case).' }),
        certFile: str({ default: '', nonEmpty: true, description: 'PEM certificate of the recipient.' }),
      },
      {
        default: [],
        required: ['address', 'certFile'],
        description: 'Optional S/MIME encryption (M5): recipients with a certificate get the signed mail encrypted to them: `{ "address", "certFile" }`.',
      },
    ),
    encryptionCipher: oneOf(['aes-256-cbc', 'aes-256-gcm'] as const, {
      default: 'aes-256-cbc',
      description: 'Content cipher for S/MIME encryption: AES-256-CBC (EnvelopedData, widest client support) or AES-256-GCM (AuthEnvelopedData, RFC 5083).',
    }),
  }),
  spool: obj({
    epochSeconds: int({
      default: 3600,
      min: 1,
      max: 7 * 86400,
      description:
        'Length of a key epoch (S13): each epoch has its own wrapping key in the HSM, destroyed when the epoch has ended and its last message is final.',
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
  delivery: obj({
    enabled: bool({ default: true, description: 'Deliver queued mail. Off: mail stays queued (maintenance).' }),
    egress: records(
      {
        address: str({ default: '', nonEmpty: true, check: (v) => (isIP(v) ? undefined : 'is not an IP address'), description: 'Source address.' }),
        ehloName: str({ default: '', nonEmpty: true, description: 'Name announced in EHLO from this address (its PTR).' }),
        weight: int({ default: 1, min: 1, max: 100, description: 'Share of connections.' }),
        bitsPerSecond: int({
          default: 0,
          min: 0,
          max: 10_000_000_000,
          description: 'Optional sub-limit for this address within the shared budget (M3), e.g. when its uplink is slower; 0: only the shared budget.',
        }),
      },
      {
        default: [
          { address: '127.0.0.11', ehloName: 'mta1.localhost', weight: 1, bitsPerSecond: 0 },
          { address: '127.0.0.12', ehloName: 'mta2.localhost', weight: 1, bitsPerSecond: 0 },
          { address: '127.0.0.13', ehloName: 'mta3.localhost', weight: 1, bitsPerSecond: 0 },
          { address: '127.0.0.14', ehloName: 'mta4.localhost', weight: 1, bitsPerSecond: 0 },
        ],
        required: ['address', 'ehloName'],
        description:
          'Egress addresses (M2): `{ "address", "ehloName", "weight", "bitsPerSecond" }`. Loopback aliases on a dev machine; the four NIC addresses ' +
          'provisioning assigned on the box.',
      },
    ),
    routes: records(
      {
        domain: str({ default: '', nonEmpty: true, description: 'Recipient domain, or "*" for all.' }),
        host: str({ default: '', nonEmpty: true, description: 'Host or address to deliver to.' }),
        port: int({ default: 25, min: 1, max: 65535, description: 'Port.' }),
        tls: oneOf(['opportunistic', 'required', 'none'] as const, { default: 'opportunistic', description: 'TLS policy for this route.' }),
      },
      {
        default: [],
        required: ['domain', 'host'],
        description: 'Static routes, used before MX (like Postfix transport maps): `{ "domain", "host", "port", "tls" }`.',
      },
    ),
    requireTls: list(str({ default: '', description: '' }), {
      default: [],
      description: 'Recipient domains that must get TLS with a verified certificate: without it mail is deferred, never sent in clear.',
    }),
    tlsCaFile: str({
      default: '',
      check: (v) => (v === '' || pemCertificates(v) ? undefined : 'is not a readable PEM file of CA certificates'),
      description:
        'PEM file of extra CA certificates that verify receiving servers where TLS is required (`requireTls`, routes with `"tls": "required"`), e.g. ' +
        "the firm's internal CA for the archive route. Always trusted besides: the operating system's CA store.",
    }),
    smtpPort: int({ default: 25, min: 1, max: 65535, description: 'Port for MX delivery.' }),
    bandwidthBitsPerSecond: int({
      default: 10_000_000,
      min: 8000,
      max: 10_000_000_000,
      description: 'Egress byte budget shared by all outbound sockets, TLS included (M3).',
    }),
    burstBytes: int({
      default: 0,
      min: 0,
      max: 16_777_216,
      description:
        "Bytes that may go out at once above the steady rate; 0 means 1 % of a second's budget, so no 1-second window exceeds the budget by more than " +
        'about 1 %.',
    }),
    tcDevices: list(str({ default: '', description: '', pattern: /^[A-Za-z0-9_.:-]{1,15}$/ }), {
      default: [],
      description:
        'Egress NICs on which the box also installs a kernel token bucket filter (tc-tbf) at `bandwidthBitsPerSecond` at start; needs CAP_NET_ADMIN. ' +
        'Empty (the development default): off.',
    }),
    maxConnections: int({ default: 32, min: 1, max: 10000, description: 'Outbound connections in all.' }),
    perDestinationConnections: int({ default: 4, min: 1, max: 1000, description: 'Outbound connections to one destination host.' }),
    perDestinationMessagesPerSecond: int({
      default: 0,
      min: 0,
      max: 100000,
      description: 'Messages per second to one destination host (GCRA, one second of burst); 0 for no limit.',
    }),
    messagesPerConnection: int({ default: 100, min: 1, max: 100000, description: 'Messages sent over one connection before it is closed.' }),
    retrySeconds: list(int({ default: 0, min: 1, max: 86400, description: '' }), {
      default: [60, 300, 900, 1800, 3600, 7200, 14400],
      description: 'Back-off between attempts; the last value repeats.',
    }),
    maxAgeSeconds: int({ default: 3 * 86400, min: 60, max: 30 * 86400, description: 'A message still undelivered this long after submission expires (M8).' }),
    blockPauseSeconds: int({
      default: 600,
      min: 1,
      max: 86400,
      description: 'When a destination blocks one source address, that address is paused for it this long while the others carry on.',
    }),
    throttlePauseSeconds: int({
      default: 120,
      min: 1,
      max: 86400,
      description:
        'When a destination asks one source address to slow down (421, or a 4xx naming a rate or connection limit), that address rests there this long ' +
        'while the others carry on; the mail is retried on another address at once.',
    }),
    timeouts: obj({
      connectMs: int({ default: 30000, min: 100, max: 600000, description: 'Outbound TCP connect timeout.' }),
      greetingMs: int({ default: 300000, min: 100, max: 600000, description: 'Server greeting (RFC 5321 §4.5.3.2: 5 min).' }),
      commandMs: int({ default: 300000, min: 100, max: 600000, description: 'Each command reply.' }),
      dataMs: int({ default: 600000, min: 100, max: 3600000, description: 'Reply after the end of DATA (10 min).' }),
    }),
    auditCopy: obj({
      address: str({ default: '', description: 'Firm mailbox that gets a byte-identical copy of every statement (M7); empty for none.' }),
      host: str({ default: '', description: 'Internal host for the copies (never over the public egress addresses).' }),
      port: int({ default: 25, min: 1, max: 65535, description: 'Port of the internal archive host.' }),
    }),
    notifyAddress: str({ default: '', description: 'Firm address that gets a delivery status notification for every bounce and expiry (M8).' }),
  }),
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
