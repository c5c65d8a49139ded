import { spawn, type ChildProcess } from 'node:child_process'
import type { Logger } from './log.ts'

/**
 * The sd_notify protocol without a native addon (the systemd unit is
 * `Type=notify`, `NotifyAccess=all`, `WatchdogSec=`): messages go to
 * $NOTIFY_SOCKET, a Unix datagram socket, which Node cannot write. One small
 * relay process (python3, which the box has) lives as long as the daemon,
 * in its cgroup, and sends each line the daemon writes to its stdin as one
 * datagram. A relay that lives on matters: systemd finds the unit of a
 * message by the sender's cgroup, and loses messages of processes that exit
 * at once (the race `systemd-notify` has).
 *
 * READY=1 goes out when every component has started; WATCHDOG=1 from a timer
 * on the event loop every half `WATCHDOG_USEC`, so a blocked loop stops the
 * pings and systemd restarts the box; STOPPING=1 when a stop begins. Without
 * $NOTIFY_SOCKET (npm start) it does nothing.
 */
const RELAY = `
import os, socket, sys
a = os.environ["NOTIFY_SOCKET"]
a = "\\0" + a[1:] if a.startswith("@") else a
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for line in sys.stdin:
    s.sendto(line.rstrip("\\n").replace("\\\\n", "\\n").encode(), a)
`

export class ServiceNotifier {
  readonly #env: NodeJS.ProcessEnv
  readonly #log: Logger
  #relay: ChildProcess | undefined
  #watchdog: NodeJS.Timeout | undefined

  constructor(o: { env: NodeJS.ProcessEnv; log: Logger }) {
    this.#env = o.env
    this.#log = o.log.child({ component: 'notify' })
  }

  /** Whether a service manager listens ($NOTIFY_SOCKET). */
  get supervised(): boolean {
    return Boolean(this.#env.NOTIFY_SOCKET)
  }

  /** The watchdog interval systemd asked for (half of WATCHDOG_USEC), if it asked this process. */
  get watchdogMs(): number | undefined {
    const usec = Number(this.#env.WATCHDOG_USEC)
    const pid = this.#env.WATCHDOG_PID
    if (!usec || (pid && Number(pid) !== process.pid)) return undefined
    return Math.max(1, Math.floor(usec / 2000))
  }

  /** The box has started: READY=1 with a status line, and the watchdog pings from now on. */
  ready(status: string): void {
    if (!this.supervised) return
    this.#send(`READY=1\nSTATUS=${status}`)
    const every = this.watchdogMs
    if (every) {
      this.#watchdog = setInterval(() => this.#send('WATCHDOG=1'), every)
      this.#watchdog.unref()
      this.#log.info({ everyMs: every }, 'watchdog pings for the service manager')
    }
  }

  status(text: string): void {
    if (this.supervised) this.#send(`STATUS=${text}`)
  }

  /** A stop begins: the pings end, so a stop that hangs past the unit's timeout is killed. */
  stopping(): void {
    clearInterval(this.#watchdog)
    if (!this.supervised) return
    this.#send('STOPPING=1')
    this.#relay?.stdin?.end()
  }

  #send(message: string): void {
    if (!this.#relay) {
      const relay = spawn('python3', ['-c', RELAY], { stdio: ['pipe', 'ignore', 'pipe'], env: { NOTIFY_SOCKET: this.#env.NOTIFY_SOCKET } })
      relay.on('error', (err) => this.#log.error({ err: err.message }, 'cannot start the notify relay (python3)'))
      relay.stderr?.setEncoding('utf8').on('data', (d: string) => this.#log.warn({ stderr: d.trim() }, 'notify relay'))
      relay.stdin?.on('error', () => undefined)
      relay.unref()
      ;(relay.stdin as unknown as { unref?: () => void } | null)?.unref?.()
      this.#relay = relay
    }
    this.#relay.stdin?.write(`${message.replace(/\n/g, '\\n')}\n`)
  }
}
