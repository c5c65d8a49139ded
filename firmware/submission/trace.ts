import { rfc5322Date } from '../mime/date.ts'

export interface TraceInfo {
  /** The name the client gave in EHLO/HELO. */
  readonly helo: string | undefined
  readonly clientAddress: string
  /** How much of the client goes into the header (its name and address are the firm's internals). */
  readonly show: 'hidden' | 'name' | 'name-and-address'
  readonly hostname: string
  readonly tls: boolean
  readonly authenticated: boolean
  readonly id: string
  readonly at: number
}

/**
 * The trace field an SMTP server must put at the top of a mail it accepts
 * (RFC 5321 §4.4), with the protocol keyword of RFC 3848 (ESMTPSA: TLS and
 * AUTH). The queue id ties the delivered mail to the box's log and audit
 * trail. The recipient ("for") is left out: it is already in To, and trace
 * fields travel with every copy.
 */
export function receivedHeader(t: TraceInfo): string {
  const protocol = `ESMTP${t.tls ? 'S' : ''}${t.authenticated ? 'A' : ''}`
  const by = `by ${t.hostname} (Statement Gateway) with ${protocol} id ${t.id};\r\n\t${rfc5322Date(t.at)}\r\n`
  // Hidden: like the "Received: by … with … id …" lines large providers add for their
  // internal hops (RFC 5322 §3.6.7 allows a trace field without "from").
  if (t.show === 'hidden') return `Received: ${by}`
  // The EHLO name is the client's own text: only a domain or an address literal goes in.
  const helo = t.helo && (/^[A-Za-z0-9][A-Za-z0-9.-]{0,253}$/.test(t.helo) || /^\[(?:IPv6:)?[0-9A-Fa-f:.]{2,45}\]$/.test(t.helo)) ? t.helo : 'unknown'
  const address = t.clientAddress.includes(':') ? `IPv6:${t.clientAddress}` : t.clientAddress
  const from = t.show === 'name-and-address' ? `${helo} ([${address}])` : helo
  return `Received: from ${from}\r\n\t${by}`
}
