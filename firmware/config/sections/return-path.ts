import { bool, int, obj, oneOf, records, str } from '../types.ts'
import { listenAddress } from './fields.ts'
import { timeZoneProblem } from './reports.ts'

const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/

const domainProblem = (v: string) => (DOMAIN.test(v) ? undefined : `"${v}" is not a domain name in lower case`)

/** The return path (M8, M10, M11): where bounces and read receipts come back, and how they are read. */
export const returnPath = obj({
  domains: records(
    {
      from: str({ default: '', nonEmpty: true, check: domainProblem, description: "The firm's sending domain (the envelope sender's)." }),
      returnPath: str({ default: '', nonEmpty: true, check: domainProblem, description: 'Its return-path domain, e.g. bounce.bank.example.' }),
    },
    {
      default: [],
      required: ['from', 'returnPath'],
      description:
        'Sending domains whose statements go out with a VERP envelope sender `b-<token>@<returnPath>` (one SMTP transaction per recipient), so ' +
        'bounces come back to the box: `{ "from": "bank.example", "returnPath": "bounce.bank.example" }`. Use a subdomain of the From domain, so ' +
        'SPF aligns under DMARC relaxed mode; `npm run dkim -- dns` prints its MX and SPF records. Mail from other domains keeps its own sender.',
    },
  ),
  listen: listenAddress("Where the inbound listener takes bounces and read receipts (the appliance: the return-path MX's address, port 25).", '127.0.0.1:2525'),
  mxHost: str({
    default: '',
    description: "Host name the return-path domains' MX records name (the box's public name for the listener); empty: `submission.hostname`.",
  }),
  enabled: bool({ default: true, description: 'Run the inbound listener (with `domains` set).' }),
  maxMessageBytes: int({
    default: 10 * 1024 * 1024,
    min: 64 * 1024,
    max: 50 * 1024 * 1024,
    description: 'Largest report accepted (bounces quote the statement); larger ones get 552 5.3.4.',
  }),
  maxConnectionsPerClient: int({ default: 10, min: 1, max: 1000, description: 'Connections one client address may hold open at once.' }),
  maxClients: int({
    default: 2000,
    min: 1,
    max: 100000,
    description: 'Connections the listener holds open at once, from all addresses together; more get 421 4.7.0 at connect.',
  }),
  memoryBudgetBytes: int({
    default: 64 * 1024 * 1024,
    min: 1024 * 1024,
    max: 2 ** 34,
    description:
      'Memory for reports being received, all connections together. Half of it is split evenly among `maxClients` (each report keeps that much ' +
      'whatever the others do, so a small DSN is always taken); the other half is shared, first come first served, by larger reports. A report ' +
      'that finds no room is read to its end without being kept and answered 452 4.3.1 (the sender retries); the box never takes more memory.',
  }),
  maxRecipientsPerReport: int({
    default: 5,
    min: 1,
    max: 100,
    description:
      'Distinct token addresses one report may be sent to (a real DSN or read receipt has one); more get 452 4.5.3. Repeated RCPTs of one ' +
      'address count once, and each address becomes one audit record.',
  }),
  reportsPerMinutePerClient: int({
    default: 600,
    min: 1,
    max: 100000,
    description:
      'Audit records one client address may cause a minute (one per token address of a report, one for a report without a token); more get 421 4.7.0.',
  }),
  socketTimeoutMs: int({ default: 60000, min: 250, max: 600000, description: 'Idle time after which a connection to the listener is closed.' }),
  greetingDelayMs: int({
    default: 100,
    min: 0,
    max: 10000,
    description:
      'Pause before the greeting, in which a client that talks first (a spam engine that does not wait for the banner) is refused: 421 "You ' +
      'talk too soon". The listener faces the internet, so smtp-server\'s 100 ms stays the default.',
  }),
  readReceipts: records(
    {
      statementClass: str({ default: '', nonEmpty: true, description: 'The statement class (X-Statement-Class), e.g. monthly-high-value.' }),
      readEvidence: oneOf(['mdn', 'confirm-link', 'open'] as const, {
        default: 'mdn',
        description:
          "What counts as read, the firm's compliance decision: `mdn` (a read receipt with disposition displayed), `confirm-link` (the customer " +
          "follows the statement's confirmation link) or `open` (a person's mail client loads the tracking image; image proxies do not count).",
      }),
      firstSendWaitMinutes: int({
        default: 2880,
        min: 1,
        max: 43200,
        description: 'No read within this long after the first send (default 48 hours): the statement is sent a second time.',
      }),
      secondSendWaitMinutes: int({
        default: 2880,
        min: 1,
        max: 43200,
        description: 'No read within this long after the second send: paper is owed (the rule says 2 days).',
      }),
      deadlineDay: int({
        default: 10,
        min: 1,
        max: 28,
        description: 'Day of the month (of the first send) after which no statement is sent again: the rule allows two sends before the 10th.',
      }),
      timeZone: str({ default: 'Asia/Taipei', check: timeZoneProblem, description: 'Time zone of the deadline day.' }),
    },
    {
      default: [],
      required: ['statementClass'],
      description:
        'M11, the two-sends-two-days rule: statements of these classes to one recipient ask for a read receipt (Disposition-Notification-To ' +
        'at the return-path domain, before signing), stay encrypted in the spool after delivery, are sent a second time if no read comes, and ' +
        'owe paper (`no read receipt`) if none comes within the second wait. Needs the sender domain in `domains`.',
    },
  ),
  replyText: oneOf(['masked', 'none'] as const, {
    default: 'masked',
    description:
      "What the box keeps of a receiver's words in a bounce (the trail, the ledger's last reply, webhooks, the firm's notice): `masked` (addresses, " +
      'national IDs and long numbers masked, at most 200 characters) or `none` (only the status and reply codes and the category).',
  }),
  rulesFile: str({
    default: '',
    description:
      "The firm's own bounce classification rules (the shape of firmware/return-path/rules.json), tried before the built-in ones; empty: built-in only.",
  }),
})
