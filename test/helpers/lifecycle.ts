import { readFileSync } from 'node:fs'
import { connect as netConnect, type Socket } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls'
import { ACCOUNT } from './box.ts'
import { spawnDaemon, writeDaemonConfig, type Child } from './daemon.ts'

/**
 * Every way a connection to one of the box's listeners can end (#29): the
 * real daemon (`firmware/main.ts`) as a child process with short timeouts,
 * its five listeners, and for each a set of cases a client can play — say
 * nothing, send half a TLS hello, go quiet after the handshake, or leave (FIN
 * or RST) in the middle of AUTH, DATA or an HTTP request. After each case the
 * daemon must be alive and serve a good client. The test matrix and the
 * reliability suite's lifecycle fuzz both use it.
 */

type T = { teardown(fn: () => unknown): void }

/** Short deadlines for every listener: an idle case is over in a second or two (300 ms failed a good client's TLS + scrypt AUTH on a loaded 2-core CI). */
export const LIFECYCLE_TIMEOUTS = { authMs: 1000, socketMs: 1000 }

export type ListenerName = 'submission-starttls' | 'submission-implicit' | 'return-path' | 'admin' | 'tracking'
export const LISTENERS: readonly ListenerName[] = ['submission-starttls', 'submission-implicit', 'return-path', 'admin', 'tracking']

export type CaseName =
  | 'idle before any byte'
  | 'half a TLS hello'
  | 'idle after the handshake'
  | 'FIN mid-command'
  | 'RST mid-command'
  | 'FIN mid-data'
  | 'RST mid-data'
  | 'idle mid-data'
export const CASES: readonly CaseName[] = [
  'idle before any byte',
  'half a TLS hello',
  'idle after the handshake',
  'FIN mid-command',
  'RST mid-command',
  'FIN mid-data',
  'RST mid-data',
  'idle mid-data',
]

/** The first 50 of the 517 bytes of a TLS ClientHello (a record header and the start of the hello). */
export const HALF_HELLO = Buffer.from('160301020001000200030378d2a7ac5c9e3c0d2a4bb1e4f0c3a1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f60718293a4b', 'hex')

/** What the cases need of a running box: its listeners, its TLS trust, a submission account, and whether it still runs. */
export interface Target {
  ports: Record<ListenerName, number>
  tls: ConnectionOptions
  account: { name: string; password: string }
  alive(): boolean
}

export interface LifecycleBox extends Target {
  child: Child
  dataDir: string
}

/** The daemon with all five listeners on port 0 and every timeout short; ports read back from its log. */
export async function startLifecycleBox(t: T, extra: Record<string, unknown> = {}): Promise<LifecycleBox> {
  const { authMs, socketMs } = LIFECYCLE_TIMEOUTS
  const cfg = await writeDaemonConfig(t, {
    ...extra,
    spool: { verifyOnStart: false },
    submission: { authTimeoutMs: authMs, socketTimeoutMs: socketMs, ...(extra.submission ?? {}) },
    delivery: { routes: [{ domain: '*', host: '127.0.0.1', port: 1, tls: 'opportunistic' }] },
    returnPath: { domains: [{ from: 'bank.example', returnPath: 'bounce.bank.example' }], listen: '127.0.0.1:0', socketTimeoutMs: socketMs },
    admin: { listen: '127.0.0.1:0', requestTimeoutMs: socketMs },
    reports: { tracking: { listen: '127.0.0.1:0', baseUrl: 'https://track.bank.example', requestTimeoutMs: socketMs } },
  })
  const child = spawnDaemon(t, ['--config', cfg.path])
  const sub = (await child.waitFor((r) => r.msg === 'submission listening', 60_000)) as { starttls?: { port: number }; implicitTls?: { port: number } }
  const rp = (await child.waitFor((r) => r.msg === 'return-path listener up')) as { listen?: string }
  const admin = (await child.waitFor((r) => r.msg === 'admin page listening')) as { url?: string }
  const tracking = (await child.waitFor((r) => r.msg === 'tracking listener ready')) as { address?: { port: number } }
  await child.waitFor((r) => r.msg === 'statement gateway started')
  const ports: Record<ListenerName, number> = {
    'submission-starttls': sub.starttls!.port,
    'submission-implicit': sub.implicitTls!.port,
    'return-path': Number(rp.listen!.split(':').pop()),
    admin: Number(new URL(admin.url!).port),
    tracking: tracking.address!.port,
  }
  const tls = { ca: readFileSync(join(cfg.dataDir, 'tls', 'submission.crt')), servername: 'localhost' }
  return { child, dataDir: cfg.dataDir, ports, tls, account: ACCOUNT, alive: () => child.proc.exitCode === null && child.proc.signalCode === null }
}

/** A raw connection a case drives byte by byte: plain first, TLS on top when the case gets there. */
export class Wire {
  socket: Socket | TLSSocket
  buffer = ''
  closed = false
  readonly closedAt: Promise<number>
  #wake: (() => void) | undefined

  constructor(socket: Socket) {
    this.socket = socket
    this.closedAt = new Promise((resolve) => socket.once('close', () => resolve(Date.now())))
    this.#attach(socket)
  }

  static async open(port: number, localAddress?: string): Promise<Wire> {
    const s = netConnect({ host: '127.0.0.1', port, ...(localAddress ? { localAddress } : {}) })
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve)
      s.once('error', reject)
    })
    return new Wire(s)
  }

  #attach(s: Socket | TLSSocket): void {
    s.on('data', (d: Buffer) => {
      this.buffer += d.toString('latin1')
      this.#wake?.()
    })
    s.on('close', () => {
      this.closed = true
      this.#wake?.()
    })
    s.on('error', () => {})
  }

  /** Waits until the buffer holds `re` (returns its match), the connection closes, or `ms` pass. */
  async until(re: RegExp, ms = 5000): Promise<RegExpExecArray | undefined> {
    const end = Date.now() + ms
    for (;;) {
      const m = re.exec(this.buffer)
      if (m) return m
      if (this.closed || Date.now() > end) return undefined
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50)
        this.#wake = () => (clearTimeout(timer), resolve())
      })
    }
  }

  async tls(options: ConnectionOptions): Promise<void> {
    const plain = this.socket
    plain.removeAllListeners('data')
    const secure = tlsConnect({ socket: plain, ...options })
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve())
      secure.once('error', reject)
    })
    this.socket = secure
    this.buffer = ''
    this.#attach(secure)
  }

  write(data: string | Buffer): void {
    this.socket.write(data)
  }

  /** The client leaves: a FIN (end) or an RST (reset of the TCP connection under any TLS). */
  leave(how: 'fin' | 'rst'): void {
    if (how === 'fin') this.socket.end()
    else {
      const raw = (this.socket as TLSSocket & { _parent?: Socket })._parent ?? this.socket
      raw.resetAndDestroy()
    }
  }

  /** Waits until the box closes the connection; the time it took, or undefined if it did not within `ms`. */
  async closedWithin(ms: number): Promise<number | undefined> {
    const start = Date.now()
    const at = await Promise.race([this.closedAt, sleep(ms).then(() => undefined)])
    return at === undefined ? undefined : at - start
  }
}

const SMTP_REPLY = /(?:^|\r\n)(\d{3}) [^\r\n]*\r\n$/

async function smtpCmd(w: Wire, line: string, code: RegExp): Promise<void> {
  w.buffer = ''
  w.write(`${line}\r\n`)
  const m = await w.until(SMTP_REPLY)
  if (!m || !code.test(m[1]!)) throw new Error(`${line}: ${JSON.stringify(w.buffer)}`)
}

const authPlain = (a: Target['account']) => `AUTH PLAIN ${Buffer.from(`\0${a.name}\0${a.password}`).toString('base64')}`

/** Gets a connection of `listener` to where the case starts playing: after the greeting and TLS, if it has them. */
export async function handshake(box: Target, listener: ListenerName, w: Wire): Promise<void> {
  switch (listener) {
    case 'submission-starttls':
    case 'return-path':
      if (!(await w.until(/^220 .*\r\n/))) throw new Error('no greeting')
      await smtpCmd(w, 'EHLO client.test', /^250$/)
      await smtpCmd(w, 'STARTTLS', /^220$/)
      await w.tls(box.tls)
      await smtpCmd(w, 'EHLO client.test', /^250$/)
      return
    case 'submission-implicit':
      await w.tls(box.tls)
      if (!(await w.until(/^220 .*\r\n/))) throw new Error('no greeting')
      await smtpCmd(w, 'EHLO client.test', /^250$/)
      return
    case 'admin':
      await w.tls({ ...box.tls, ALPNProtocols: ['http/1.1'] })
      return
    case 'tracking':
      return
  }
}

/** Plays `kind` against `listener` from `localAddress`; resolves once the case is over (the box closed, or the client left). */
export async function playCase(box: Target, listener: ListenerName, kind: CaseName, localAddress?: string): Promise<{ closedByBoxMs?: number }> {
  const w = await Wire.open(box.ports[listener], localAddress)
  const patience = 10_000
  try {
    if (kind === 'idle before any byte') return { closedByBoxMs: await w.closedWithin(patience) }
    if (kind === 'half a TLS hello') {
      if (listener === 'submission-starttls' || listener === 'return-path') {
        await w.until(/^220 .*\r\n/)
        await smtpCmd(w, 'EHLO client.test', /^250$/)
        await smtpCmd(w, 'STARTTLS', /^220$/)
      }
      // Tracking is plain HTTP: half a request line is its half hello.
      w.write(listener === 'tracking' ? 'GET /o/abc HT' : HALF_HELLO)
      return { closedByBoxMs: await w.closedWithin(patience) }
    }
    await handshake(box, listener, w)
    if (kind === 'idle after the handshake') {
      if (listener === 'tracking') {
        w.write('GET /o/abc HTTP/1.1\r\nHost: track.bank.example\r\n\r\n')
        await w.until(/\r\n\r\n/)
      }
      return { closedByBoxMs: await w.closedWithin(patience) }
    }
    const how = kind.startsWith('FIN') ? 'fin' : kind.startsWith('RST') ? 'rst' : 'idle'
    const midData = kind.endsWith('mid-data')
    switch (listener) {
      case 'submission-starttls':
      case 'submission-implicit':
        if (!midData) {
          w.write('AUTH LOGIN\r\n')
          await w.until(/^334 /m)
        } else {
          await smtpCmd(w, authPlain(box.account), /^235$/)
          await smtpCmd(w, 'MAIL FROM:<statements@bank.example>', /^250$/)
          await smtpCmd(w, 'RCPT TO:<customer@example.net>', /^250$/)
          await smtpCmd(w, 'DATA', /^354$/)
          w.write('From: statements@bank.example\r\nTo: customer@example.net\r\nSubject: half\r\n\r\nThe first half of a ')
        }
        break
      case 'return-path':
        if (!midData) w.write('MAIL FROM:<mailer-dae')
        else {
          await smtpCmd(w, 'MAIL FROM:<>', /^250$/)
          await smtpCmd(w, 'RCPT TO:<postmaster@bounce.bank.example>', /^250$/)
          await smtpCmd(w, 'DATA', /^354$/)
          w.write('From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail\r\n\r\nThe first half of a ')
        }
        break
      case 'admin':
      case 'tracking':
        if (!midData) w.write(`GET /${listener === 'admin' ? 'login' : 'o/abc'} HTTP/1.1\r\nHost: box\r\nUser-Agent: half`)
        else
          w.write(
            `POST /${listener === 'admin' ? 'login' : 'o/abc'} HTTP/1.1\r\nHost: box\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 500\r\n\r\nuser=a`,
          )
        break
    }
    await sleep(20)
    if (how === 'idle') return { closedByBoxMs: await w.closedWithin(patience) }
    w.leave(how)
    return {}
  } finally {
    if (!w.closed) w.socket.destroy()
  }
}

/** A good client of `listener`: the answer it normally gets (250 for mail and reports, the login page, a tracking 404). */
export async function goodClient(box: Target, listener: ListenerName, localAddress?: string): Promise<string> {
  const started = Date.now()
  const w = await Wire.open(box.ports[listener], localAddress)
  try {
    await handshake(box, listener, w)
    switch (listener) {
      case 'submission-starttls':
      case 'submission-implicit':
        await smtpCmd(w, authPlain(box.account), /^235$/)
        await smtpCmd(w, 'MAIL FROM:<statements@bank.example>', /^250$/)
        await smtpCmd(w, 'RCPT TO:<customer@example.net>', /^250$/)
        await smtpCmd(w, 'DATA', /^354$/)
        await smtpCmd(
          w,
          `From: statements@bank.example\r\nTo: customer@example.net\r\nSubject: good\r\nMessage-ID: <${started}.${Math.random()}@bank.example>\r\n\r\nA good statement.\r\n.`,
          /^250$/,
        )
        return '250'
      case 'return-path': {
        await smtpCmd(w, 'MAIL FROM:<>', /^250$/)
        await smtpCmd(w, 'RCPT TO:<postmaster@bounce.bank.example>', /^250$/)
        await smtpCmd(w, 'DATA', /^354$/)
        await smtpCmd(w, 'From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail\r\n\r\nA notice.\r\n.', /^250$/)
        return '250'
      }
      case 'admin':
      case 'tracking': {
        w.write(`GET /${listener === 'admin' ? 'static/app.css' : 'o/abc'} HTTP/1.1\r\nHost: box\r\nConnection: close\r\n\r\n`)
        const m = await w.until(/^HTTP\/1\.1 (\d{3})/)
        if (!m) throw new Error(`no HTTP answer: ${JSON.stringify(w.buffer.slice(0, 200))}`)
        return m[1]!
      }
    }
  } finally {
    w.socket.destroy()
  }
}

/** What a good client of each listener normally gets. */
export const GOOD_ANSWER: Record<ListenerName, string> = {
  'submission-starttls': '250',
  'submission-implicit': '250',
  'return-path': '250',
  admin: '200',
  tracking: '404',
}
