import { isIP } from 'node:net'
import { bool, int, list, obj, oneOf, records, str } from '../types.ts'
import { pemCertificates } from './fields.ts'

/** Delivery (M2, M3, M7, M8, S1): egress addresses, bandwidth, routes, retries, notices. */
export const delivery = obj({
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
      'Bytes that may go out at once above the steady rate, making up for a moment with nothing to send (between two mails, a reconnect); ' +
      "0 means 5 % of a second's budget (at least 4 KiB). Whatever the burst, no 1-second window holds more than a second's budget.",
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
  messagesPerConnection: int({
    default: 100,
    min: 1,
    max: 100000,
    description:
      'Messages sent over one connection before it is closed, at most: connections opened together close at different counts ' +
      '(down to five eighths of it), so not all at once.',
  }),
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
})
