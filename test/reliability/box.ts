import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { controlRequests, controlSocketPath } from '../../firmware/control/server.ts'
import { parseConfig, type Config } from '../../firmware/config/load.ts'
import { DAEMON_ENV, DAEMON_NODE_ARGS } from '../../firmware/runtime.ts'
import { RawSmtp } from '../helpers/smtp.ts'
import type { ListenerName, Target } from '../helpers/lifecycle.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/**
 * A development box for the reliability suite: made by the same first boot as
 * `npm start` (S/MIME and DKIM keys in a SoftHSM token), its config adjusted
 * for the scenario, run as the daemon process `npm start` runs — so a kill -9
 * is a kill of the real thing.
 */
export class Box {
  readonly dataDir: string
  readonly configPath: string
  proc: ChildProcess | undefined
  port = 0
  implicitPort = 0
  /** Every listener's port, read back from the log at start (each is configured as 0). */
  ports: Partial<Record<ListenerName, number>> = {}
  log: string[] = []
  #exited: Promise<number | null> | undefined

  constructor(dataDir = mkdtempSync(join(tmpdir(), 'sg-rel-'))) {
    this.dataDir = dataDir
    this.configPath = join(dataDir, 'config.json')
  }

  /** First boot, then the scenario's changes merged into the config. */
  static async create(adjust: (c: Record<string, unknown>) => void, dataDir?: string): Promise<Box> {
    const box = new Box(dataDir)
    execFileSync(process.execPath, [join(ROOT, 'provisioning/first-boot.ts'), '--data-dir', box.dataDir], { stdio: 'ignore' })
    const raw = JSON.parse(readFileSync(box.configPath, 'utf8')) as Record<string, unknown>
    adjust(raw)
    writeFileSync(box.configPath, JSON.stringify(raw, null, 2))
    return box
  }

  get config(): Config {
    return parseConfig(JSON.parse(readFileSync(this.configPath, 'utf8')))
  }

  get password(): string {
    return readFileSync(join(this.dataDir, 'secrets', 'submission-statements.password'), 'utf8').trim()
  }

  get tls() {
    return { ca: readFileSync(join(this.dataDir, 'tls', 'submission.crt')), servername: 'localhost' }
  }

  /** The running box as the lifecycle cases see it (test/helpers/lifecycle.ts). */
  get target(): Target {
    const ports = this.ports as Record<ListenerName, number>
    return { ports, tls: this.tls, account: { name: 'statements', password: this.password }, alive: () => this.alive }
  }

  async start(timeoutMs = 60_000): Promise<void> {
    this.ports = {}
    const proc = spawn(process.execPath, [...DAEMON_NODE_ARGS, join(ROOT, 'firmware/main.ts'), '--config', this.configPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Each journal flush noted beside the journal (hal/storage/append-thread.ts): read after a kill, not asked for before it.
      env: { ...process.env, ...DAEMON_ENV, SG_JOURNAL_FLUSH_LOG: '1' },
    })
    this.proc = proc
    this.#exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)))
    let pending = ''
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the box did not start within ${timeoutMs} ms:\n${this.log.slice(-20).join('\n')}`)), timeoutMs)
      proc.stdout.setEncoding('utf8').on('data', (d: string) => {
        pending += d
        const lines = pending.split('\n')
        pending = lines.pop()!
        for (const l of lines) {
          this.log.push(l)
          if (this.log.length > 100_000) this.log.splice(0, 10_000)
          if (l.includes('"msg":"submission listening"')) {
            const r = JSON.parse(l) as { starttls: { port: number }; implicitTls: { port: number } }
            this.port = r.starttls.port
            this.implicitPort = r.implicitTls.port
            this.ports['submission-starttls'] = r.starttls.port
            this.ports['submission-implicit'] = r.implicitTls.port
          }
          if (l.includes('"msg":"return-path listener up"')) this.ports['return-path'] = Number((JSON.parse(l) as { listen: string }).listen.split(':').pop())
          if (l.includes('"msg":"admin page listening"')) this.ports.admin = Number(new URL((JSON.parse(l) as { url: string }).url).port)
          if (l.includes('"msg":"tracking listener ready"')) this.ports.tracking = (JSON.parse(l) as { address: { port: number } }).address.port
          if (l.includes('"msg":"statement gateway started"')) {
            clearTimeout(timer)
            resolve()
          }
        }
      })
      proc.stderr.setEncoding('utf8').on('data', (d: string) => this.log.push(d))
      void this.#exited!.then((code) => {
        clearTimeout(timer)
        reject(new Error(`the box exited (${code}) while starting:\n${this.log.slice(-20).join('\n')}`))
      })
    })
    await ready
    this.ready = true
  }

  /** Started and serving (a client waits while it is not, as a firm's system retrying later would). */
  ready = false

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    this.ready = false
    this.proc?.kill(signal)
    return this.#exited ?? Promise.resolve(null)
  }

  get alive(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null
  }

  async status(): Promise<Record<string, unknown>> {
    const [r] = await controlRequests(controlSocketPath(this.config), [{ cmd: 'box.status', who: 'reliability' }], 10_000)
    if (!r?.ok) throw new Error(`status: ${JSON.stringify(r)}`)
    return r.result as Record<string, unknown>
  }

  async journalLag(): Promise<number[]> {
    const [r] = await controlRequests(controlSocketPath(this.config), [{ cmd: 'delivery.journal-lag', who: 'reliability' }], 10_000)
    return (r as { result: number[] }).result
  }

  /** The box's own longest event-loop stall since its start (ms), 0 if it cannot be asked. */
  async eventLoopMax(): Promise<number> {
    try {
      const s = (await this.status()) as { eventLoop?: { maxMs: number } }
      return s.eventLoop?.maxMs ?? 0
    } catch {
      return 0
    }
  }

  /** What handing each journal line to its writer thread cost the box's event loop (ms; #33). */
  async journalLineWrites(): Promise<number[]> {
    const [r] = await controlRequests(controlSocketPath(this.config), [{ cmd: 'spool.journal-line-writes', who: 'reliability' }], 10_000)
    return (r as { result: number[] }).result
  }

  async queueTotal(): Promise<number> {
    const [r] = await controlRequests(controlSocketPath(this.config), [{ cmd: 'queue.summary', who: 'reliability' }], 10_000)
    return (r as { result: { total: number } }).result.total
  }

  /**
   * Adds the journal's lines, by queue id, with the times they were written (#33: each line
   * carries it) to `into`. Read after a kill and before the restart, whose compaction rewrites it.
   */
  readJournal(into: Map<string, number[]>, writes?: Map<number, number>): void {
    let text: string
    try {
      text = readFileSync(join(this.dataDir, 'spool', 'journal'), 'latin1')
    } catch {
      return
    }
    // The flushes the sync thread noted (SG_JOURNAL_FLUSH_LOG): the end of file each made durable, and when.
    const flushes: [number, number][] = []
    // The end of the file when this life's appends began: the lines before it are a compaction's, durable otherwise.
    let start = Infinity
    try {
      for (const l of readFileSync(join(this.dataDir, 'spool', 'journal.flushes'), 'latin1').split('\n')) {
        if (l.startsWith('start ')) start = Number(l.slice(6))
        const [end, at] = l.split(' ').map(Number)
        if (Number.isFinite(end) && Number.isFinite(at)) flushes.push([end!, at!])
      }
    } catch {
      // none yet
    }
    let end = 0
    for (const line of text.split('\n')) {
      end += line.length + 1
      const f = line.split(' ')
      const stamp = f[5] ? parseInt(f[5], 36) : NaN
      if (!f[0] || !Number.isFinite(stamp)) continue
      const seen = into.get(f[0]) ?? []
      if (!seen.includes(stamp)) seen.push(stamp)
      into.set(f[0], seen)
      // Its time to durable: from its stamp to the first flush that covered it (none: the kill came first).
      const flush = flushes.find(([e]) => e >= end)
      if (writes && flush && end > start) writes.set(stamp, Math.max(writes.get(stamp) ?? 0, flush[1] - stamp))
    }
  }

  /** The times (ms) of the box's log lines with this message, from its stdout since it was made. */
  logTimes(msg: string | RegExp): number[] {
    const out: number[] = []
    for (const l of this.log) {
      if (!l.startsWith('{')) continue
      try {
        const r = JSON.parse(l) as { msg?: string; time?: string }
        if (r.msg && (typeof msg === 'string' ? r.msg === msg : msg.test(r.msg)) && r.time) out.push(Date.parse(r.time))
      } catch {
        // a partial line
      }
    }
    return out
  }

  rss(): number {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${this.proc!.pid}/status`, 'utf8'))
    return Number(m![1]) * 1024
  }

  /** The most resident memory the process has had (VmHWM), in bytes. */
  peakRss(): number {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${this.proc!.pid}/status`, 'utf8'))
    return Number(m![1]) * 1024
  }
}

export interface SendResult {
  code: number
  text: string
}

/**
 * One statement as the firm's system sends it (#33): a connection of its own, STARTTLS and
 * AUTH, one mail, then the connection is closed.
 */
export async function sendOnce(box: Box, statementId: string): Promise<SendResult> {
  const s = new Submitter(box)
  try {
    return await s.send(statementId)
  } finally {
    s.close()
  }
}

/** One authenticated submission connection that sends statements until it fails. */
export class Submitter {
  #c: RawSmtp | undefined
  readonly #box: Box
  readonly #localAddress: string | undefined

  constructor(box: Box, localAddress?: string) {
    this.#box = box
    this.#localAddress = localAddress
  }

  async send(statementId: string, extra = '', rcpt = 'customer@example.net'): Promise<SendResult> {
    try {
      if (!this.#c || this.#c.closed) {
        this.#c?.close()
        this.#c = await RawSmtp.open(this.#box.port, this.#localAddress ? { localAddress: this.#localAddress } : {})
        await this.#c.handshake(this.#box.tls)
        const a = await this.#c.authPlain('statements', this.#box.password)
        if (a.code !== 235) {
          this.close()
          return { code: a.code, text: a.text }
        }
      }
      const c = this.#c
      const from = await c.cmd('MAIL FROM:<statements@bank.example>')
      if (from.code !== 250) return { code: from.code, text: from.text }
      await c.cmd(`RCPT TO:<${rcpt}>`)
      const data = await c.cmd('DATA')
      if (data.code !== 354) return { code: data.code, text: data.text }
      c.write(statement(statementId, extra))
      const r = await c.reply(60_000)
      return { code: r.code, text: r.text }
    } catch (err) {
      this.close()
      return { code: 0, text: (err as Error).message }
    }
  }

  close(): void {
    this.#c?.close()
    this.#c = undefined
  }
}

export function statement(id: string, extra = ''): string {
  return (
    `From: "Bank Statements" <statements@bank.example>\r\nTo: customer@example.net\r\nSubject: =?UTF-8?B?${Buffer.from(`2026年11月有價證券月對帳單 ${id}`).toString('base64')}?=\r\n` +
    `X-Statement-ID: ${id}\r\nX-Statement-Class: monthly\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n${extra}\r\n` +
    `${Buffer.from(`親愛的客戶您好，這是您的電子帳單 ${id}。\n${'明細 '.repeat(200)}\n`)
      .toString('base64')
      .replace(/.{76}/g, '$&\r\n')}\r\n.\r\n`
  )
}
