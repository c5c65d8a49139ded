import { passwordHashProblem } from '../../../hal/crypto/password.ts'
import { bool, int, obj, oneOf, records, str } from '../types.ts'
import { cidr, listenerPort } from './fields.ts'

/** Submission (M1, S1, S3, S8): listeners, TLS, accounts, client limits. */
export const submission = obj({
  hostname: str({
    default: 'localhost',
    nonEmpty: true,
    description: 'Name the submission service announces in its greeting and puts in its self-made TLS certificate.',
  }),
  host: str({ default: '127.0.0.1', nonEmpty: true, description: 'Address both submission listeners bind to (`::` for all).' }),
  starttlsPort: listenerPort('Port for submission with STARTTLS (RFC 6409). 587 on the appliance; 0 picks a free port.', 2587),
  implicitTlsPort: listenerPort('Port for submission over implicit TLS (RFC 8314). 465 on the appliance; 0 picks a free port.', 2465),
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
    min: 250,
    max: 600000,
    description:
      'Time from connecting to being authenticated (or, from a trusted network, to MAIL FROM); a client that has not made it by then is ' +
      'disconnected (421 4.7.0 EAUTH_TIMEOUT once it can be told). The implicit-TLS handshake is included; a STARTTLS handshake still running ' +
      'then is ended by its own deadline, `socketTimeoutMs`.',
  }),
  memoryBudgetBytes: int({
    default: 1024 * 1024 * 1024,
    min: 16 * 1024 * 1024,
    max: 2 ** 40,
    description:
      "Memory for mail being received, checked and signed, counted at four times each message's size (the copies those steps make). Room is " +
      'given in arrival order (see `undeclaredReserveBytes`): while it is spent, new transactions get 452 4.3.1 ESUBMISSION_BUSY at MAIL FROM, and ' +
      "a message that would overrun it is read to its end without being kept; the client retries. Bounds the box's memory whatever clients send.",
  }),
  undeclaredReserveBytes: int({
    default: 1024 * 1024,
    min: 64 * 1024,
    max: 200 * 1024 * 1024,
    description:
      'Room in the memory budget a transaction gets at MAIL FROM when its client declares no SIZE (RFC 1870); with SIZE it gets that. A ' +
      'transaction that finds no room is refused there (452 4.3.1), before its data. Data beyond the room takes more as it arrives; when the ' +
      'budget is spent, the transactions admitted last give way (452 after their data), so those that came first complete.',
  }),
  socketTimeoutMs: int({
    default: 60000,
    min: 250,
    max: 600000,
    description: 'Idle time after which a client connection is closed; also the longest a TLS handshake (after STARTTLS as well) may take.',
  }),
  greetingDelayMs: int({
    default: 0,
    min: 0,
    max: 10000,
    description:
      'Pause before the greeting, in which a client that talks first is refused (421 "You talk too soon"; smtp-server\'s own is 100 ms). Off by ' +
      "default: the firm's statement systems wait for the banner, and the pause would be most of each submission's latency (#35).",
  }),
  bareLineFeed: oneOf(['reject', 'normalize'] as const, {
    default: 'reject',
    description: 'A bare CR or LF in DATA: `reject` answers 550 5.5.2; `normalize` turns it into CRLF. Either way the message is never split (SMTP smuggling).',
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
      description:
        'Failed AUTH attempts from one address within `windowSeconds` before that address is refused AUTH for `blockSeconds` (454 4.7.0 ' +
        'EAUTH_RATE_LIMITED). Failures for one account never block it: beyond this many, further checks of that account wait longer each ' +
        'time (up to 5 s), except from an address that logged in to it within the last 24 hours.',
    }),
    windowSeconds: int({ default: 900, min: 1, max: 86400, description: 'Window in which failures are counted.' }),
    blockSeconds: int({ default: 900, min: 1, max: 86400, description: 'How long AUTH is refused to an address (454 4.7.0) once it hit the limit.' }),
  }),
})
