import { bool, int, list, obj, oneOf, records, str } from '../types.ts'
import { listenAddress, pemCertificates } from './fields.ts'

/** What the firm's webhooks can be sent (M9), per statement and recipient. */
export const WEBHOOK_EVENTS = ['accepted', 'delivered', 'deferred', 'bounced', 'expired', 'removed', 'opened', 'clicked', 'read', 'paper_owed'] as const

export function timeZoneProblem(zone: string): string | undefined {
  try {
    new Intl.DateTimeFormat('en-CA', { timeZone: zone })
    return undefined
  } catch {
    return `"${zone}" is not an IANA time zone (e.g. Asia/Taipei, UTC)`
  }
}

function httpsUrlProblem(url: string): string | undefined {
  try {
    const u = new URL(url)
    if (u.protocol !== 'https:') return 'must be an https:// URL (events carry statement ids)'
    if (u.username || u.password) return 'must not carry a user or password; the request is signed instead'
    return undefined
  } catch {
    return `"${url}" is not a URL`
  }
}

function baseUrlProblem(url: string): string | undefined {
  if (url === '') return undefined
  try {
    const u = new URL(url)
    return u.protocol === 'https:' || u.protocol === 'http:' ? undefined : 'must be an http(s) URL'
  } catch {
    return `"${url}" is not a URL`
  }
}

/** Reports (M8, M9, M11, S13): the statement ledger, webhooks to the firm, opens and clicks. */
export const reports = obj({
  enabled: bool({ default: true, description: 'Keep the statement ledger (what happened to every statement and recipient) for reports and webhooks.' }),
  timeZone: str({
    default: 'Asia/Taipei',
    check: timeZoneProblem,
    description: 'Time zone of the reporting day: a statement counts on the day it was submitted, in this zone.',
  }),
  retentionDays: int({
    default: 400,
    min: 1,
    max: 3650,
    description: 'Statement and recipient rows older than this are deleted, and the deletion recorded in the audit trail (S13); daily counts stay.',
  }),
  boxId: str({ default: '', description: 'Names this box in a ledger several boxes share; empty: the host name.' }),
  postgres: obj({
    url: str({
      default: '',
      description:
        'PostgreSQL connection string (`postgresql://user@host/db` or `postgresql:///db?host=/run/postgresql`) of a ledger several boxes share; ' +
        'empty: SQLite in `<dataDir>/reports/`.',
    }),
    passwordFile: str({ default: '', description: 'File (mode 0600) holding the PostgreSQL password, if the server asks for one.' }),
  }),
  webhooks: obj({
    endpoints: records(
      {
        url: str({ default: '', nonEmpty: true, check: httpsUrlProblem, description: 'https:// URL the events are POSTed to.' }),
        events: list(oneOf(WEBHOOK_EVENTS, { default: 'delivered', description: '' }), {
          default: [...WEBHOOK_EVENTS],
          description: 'Which events this endpoint gets.',
        }),
        caFile: str({
          default: '',
          check: (v) => (v === '' || pemCertificates(v) ? undefined : `${v} holds no PEM certificate`),
          description: 'CA certificate(s) trusted for this endpoint, besides the system store.',
        }),
      },
      {
        default: [],
        required: ['url'],
        description:
          'The firm\'s webhook endpoints (M9): `{ "url", "events", "caFile" }`. Each event is one HTTPS POST of JSON, signed with ' +
          'HMAC-SHA256 (header `Statement-Gateway-Signature: t=<unix time>,v1=<hex>` over `<t>.<body>`) under a secret derived in the HSM for ' +
          'that URL (`npm run reports -- webhook-secret URL`); delivered at least once, in order per statement, with an event id for de-duplication.',
      },
    ),
    retrySeconds: list(int({ default: 60, min: 1, max: 86400, description: '' }), {
      default: [10, 60, 300, 900, 3600],
      description: 'Waits between attempts while an endpoint fails; the last repeats.',
    }),
    alarmAfterSeconds: int({
      default: 900,
      min: 1,
      max: 604800,
      description: 'An endpoint failing this long raises an alarm (log, audit trail); mail is never held up.',
    }),
    timeoutMs: int({ default: 10000, min: 100, max: 120000, description: 'Time for an endpoint to answer one event.' }),
    concurrency: int({ default: 8, min: 1, max: 256, description: 'Events in flight to one endpoint (different statements; one statement at a time).' }),
  }),
  tracking: obj({
    listen: listenAddress("Where the tracking listener takes opens and clicks (plain HTTP, behind the firm's reverse proxy).", '127.0.0.1:8080'),
    requestTimeoutMs: int({
      default: 10000,
      min: 250,
      max: 600000,
      description: 'A connection that sends no whole request within this long is closed (its headers within half of it, at most 5 s).',
    }),
    baseUrl: str({
      default: '',
      check: baseUrlProblem,
      description:
        'Public URL of the tracking listener as customers reach it (e.g. https://track.bank.example). Empty: no tracking, whatever the ' + 'profiles say.',
    }),
  }),
})
