import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { connect, type TLSSocket } from 'node:tls'
import { writeFileAtomic } from '../../hal/storage/files.ts'
import type { Component } from '../component.ts'
import type { Config } from '../config/load.ts'
import type { Logger } from '../log.ts'
import { recordLink } from './record.ts'
import { listSegments, readEnd, readLines } from './segments.ts'
import type { AuditTrail } from './trail.ts'

/** Facility 13 (log audit) × 8 + severity 6 (informational), RFC 5424 §6.2.1. */
const PRI = 13 * 8 + 6
/** SD-ID of the record's sequence number; 32473 is the enterprise number RFC 5612 reserves for documentation. */
const SD_ID = 'sgw@32473'
const CURSOR_FILE = 'syslog.cursor'

/** One trail record as an RFC 5424 message, framed by octet counting for TLS transport (RFC 5425 §4.3). */
export function syslogFrame(line: string, hostname: string): Buffer {
  const seq = recordLink(line)?.seq ?? 0
  const time = /"time":"([^"]+)"/.exec(line)?.[1] ?? '-'
  const type = (/"type":"([^"]+)"/.exec(line)?.[1] ?? '-').slice(0, 32)
  const msg = Buffer.from(`<${PRI}>1 ${time} ${hostname} statement-gateway - ${type} [${SD_ID} seq="${seq}"] \uFEFF${line}`)
  return Buffer.concat([Buffer.from(`${msg.length} `), msg])
}

/**
 * Forwards the audit trail to the firm's SIEM as RFC 5424 syslog over TLS
 * (S6, S10). The trail's own segments are the buffer: the forwarder keeps a
 * cursor (last sequence number sent, in `<dataDir>/audit/syslog.cursor`),
 * and after an outage it reads on from there, in order, before following new
 * records live. TCP cannot say what the SIEM received before a connection
 * broke, so after a break the last `replayOverlap` records are sent again;
 * each carries its sequence number for the SIEM to drop duplicates.
 */
export class SyslogForwarder implements Component {
  readonly name = 'syslog'
  readonly #config: Config['audit']['syslog']
  readonly #log: Logger
  readonly #trail: AuditTrail
  readonly #cursorFile: string
  #cursor = 0
  #savedCursor = -1
  #socket: TLSSocket | undefined
  #live = false
  #stopped = false
  #retry: NodeJS.Timeout | undefined
  #saver: NodeJS.Timeout | undefined
  #catchingUp: Promise<void> | undefined

  constructor(deps: { config: Config; log: Logger; trail: AuditTrail }) {
    this.#config = deps.config.audit.syslog
    this.#log = deps.log.child({ component: 'syslog' })
    this.#trail = deps.trail
    this.#cursorFile = join(deps.trail.dir, CURSOR_FILE)
  }

  get enabled(): boolean {
    return this.#config.host !== ''
  }

  /** Last sequence number handed to the SIEM connection. */
  get cursor(): number {
    return this.#cursor
  }

  async start(): Promise<void> {
    if (!this.enabled) return
    const saved = await readFile(this.#cursorFile, 'utf8').then(Number, () => NaN)
    // First time on: forward from now on, not five years of history.
    this.#cursor = Number.isSafeInteger(saved) ? saved : this.#trail.head.seq
    this.#trail.onAppend((lines, lastSeq) => this.#onAppend(lines, lastSeq))
    this.#saver = setInterval(() => this.#saveCursor(), 1000)
    this.#saver.unref()
    this.#connect()
  }

  async stop(): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#retry)
    clearInterval(this.#saver)
    // A SIEM that stops reading must not hold up shutdown: a clean close if it comes within 2 s.
    const s = this.#socket
    if (s && !s.destroyed) await Promise.race([new Promise<void>((resolve) => s.end(resolve)), new Promise((r) => setTimeout(r, 2000).unref())])
    s?.destroy()
    await this.#catchingUp
    this.#saveCursor()
  }

  #connect(): void {
    if (this.#stopped) return
    const c = this.#config
    const socket = connect({
      host: c.host,
      port: c.port,
      servername: c.serverName || c.host,
      ca: c.caFile ? readFileSync(c.caFile) : undefined,
      minVersion: 'TLSv1.2',
      rejectUnauthorized: true,
    })
    this.#socket = socket
    let sent = false
    socket.on('secureConnect', () => {
      this.#log.info({ host: c.host, port: c.port, from: this.#cursor + 1 }, 'connected to the SIEM; forwarding the audit trail')
      sent = true
      this.#catchingUp = this.#catchUp(socket).catch((err: Error) => {
        this.#log.error({ err: err.message }, 'reading the audit trail for forwarding failed')
        socket.destroy()
      })
    })
    socket.on('error', (err: Error) => this.#log.warn({ host: c.host, port: c.port, err: err.message }, 'SIEM connection failed'))
    socket.on('close', () => {
      if (this.#socket !== socket) return
      this.#live = false
      this.#socket = undefined
      if (sent) this.#cursor = Math.max(0, this.#cursor - c.replayOverlap)
      if (!this.#stopped) this.#retry = setTimeout(() => this.#connect(), c.retrySeconds * 1000)
    })
  }

  /** Sends everything after the cursor from the files, then switches to following appends live. */
  async #catchUp(socket: TLSSocket): Promise<void> {
    while (!this.#stopped && this.#socket === socket) {
      const target = this.#trail.head.seq
      if (this.#cursor >= target) {
        this.#live = true
        return
      }
      for (const seg of await listSegments(this.#trail.dir)) {
        const end = await readEnd(this.#trail.dir, seg.day)
        if (end && end.seq <= this.#cursor) continue
        for await (const l of readLines(seg)) {
          if (!l.complete || this.#socket !== socket) break
          const seq = recordLink(l.text)?.seq ?? 0
          if (seq <= this.#cursor) continue
          if (!socket.write(syslogFrame(l.text, this.#config.hostname))) await new Promise((r) => (socket.once('drain', r), socket.once('close', r)))
          this.#cursor = seq
        }
      }
    }
  }

  #onAppend(lines: readonly string[], lastSeq: number): void {
    const socket = this.#socket
    if (!this.#live || !socket) return
    const first = lastSeq - lines.length + 1
    if (first > this.#cursor + 1) {
      // Records this connection has not seen: back to reading the files.
      this.#live = false
      this.#catchingUp = this.#catchUp(socket).catch(() => void socket.destroy())
      return
    }
    for (let i = 0; i < lines.length; i++) {
      if (first + i <= this.#cursor) continue
      socket.write(syslogFrame(lines[i]!, this.#config.hostname))
      this.#cursor = first + i
    }
  }

  #saveCursor(): void {
    if (this.#cursor === this.#savedCursor) return
    writeFileAtomic(this.#cursorFile, String(this.#cursor))
    this.#savedCursor = this.#cursor
  }
}
