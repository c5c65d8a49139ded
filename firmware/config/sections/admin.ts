import { bool, int, obj, str } from '../types.ts'
import { cidr, listenAddress } from './fields.ts'

/** The local admin page (S3, S4, S5, S6, S8, S11): its listener, sessions, account review and Prometheus metrics. */
export const admin = obj({
  enabled: bool({ default: true, description: 'Run the admin page (HTTPS) on the management address.' }),
  listen: listenAddress(
    'Management address and HTTPS port of the admin page: the management NIC, port 443 on the appliance (never an egress address); port 0 picks ' +
      'a free one.',
    '127.0.0.1:8443',
  ),
  tls: obj({
    certFile: str({
      default: '',
      description: "PEM certificate chain for the admin page. Empty: the box's own certificate, made on first start in `<dataDir>/tls/` (as for submission).",
    }),
    keyFile: str({ default: '', description: 'PEM private key matching `certFile` (readable by the box only).' }),
  }),
  requestTimeoutMs: int({
    default: 30000,
    min: 250,
    max: 600000,
    description: 'A browser connection that completes no TLS handshake, or no request, within this long is closed; so is one idle for this long.',
  }),
  allowFrom: cidr('Browsers allowed to reach the admin page (S8); anyone else gets 403 before any page. Empty refuses everyone.', ['127.0.0.0/8', '::1/128']),
  sessionIdleMinutes: int({ default: 15, min: 1, max: 120, description: 'A session with no request for this long ends (S4).' }),
  sessionMaxHours: int({ default: 8, min: 1, max: 24, description: 'A session ends this long after its login, in use or not.' }),
  loginAttemptsPerMinute: int({
    default: 10,
    min: 1,
    max: 1000,
    description: 'Login and setup attempts one client address may make per minute, on top of the account lockout (S4: 5 failures lock the account).',
  }),
  loginDelayMs: int({
    default: 1000,
    min: 0,
    max: 10000,
    description:
      'After a failed login from an address, its next attempt waits this long before it is answered, doubling with each further failure ' +
      '(1, 2, 4, at most 8 times this); a success clears it. Slows guessing before the lock after 5 failures (S3).',
  }),
  dormantDays: int({
    default: 90,
    min: 7,
    max: 3650,
    description: 'Accounts not used for this long are flagged on the users page for the periodic review S5 asks (and disabled with `disableDormant`).',
  }),
  disableDormant: bool({ default: false, description: 'Disable dormant accounts at once instead of only flagging them.' }),
  proposalExpiryHours: int({
    default: 72,
    min: 1,
    max: 720,
    description: 'A configuration proposal no second administrator approved in this time expires (S7).',
  }),
  allowSelfApproval: bool({
    default: false,
    description:
      'Let an administrator approve their own configuration change: only for a box with a single administrator. ' +
      'The dashboard then shows a standing warning, and every such change is recorded as self-approved.',
  }),
  metrics: obj({
    tokenFile: str({
      default: '',
      description: 'File (mode 0600) holding the bearer token Prometheus sends to `/metrics` (S11). Empty: only `allowFrom` below may scrape.',
    }),
    allowFrom: cidr('Scrapers that may read `/metrics` without the token. Empty (the default): the token is needed.', []),
  }),
})
