import { statfsSync } from 'node:fs'
import type { Clock } from '../../hal/clock.ts'
import type { Config } from '../config/load.ts'
import { GatewayError } from '../errors.ts'
import type { EventSink } from '../events.ts'
import type { Logger } from '../log.ts'

type AlarmKind = 'queue' | 'disk'

/**
 * The spool's limits and their alarms (S11): a submission is refused (452)
 * when the queue holds `spool.maxMessages` or the disk is down to
 * `spool.reservePercent` free, and operators are warned well before either.
 */
export class SpoolLimits {
  readonly #config: Config['spool']
  readonly #log: Logger
  readonly #events: EventSink
  readonly #clock: Clock
  readonly #dir: string
  readonly #queued: () => number
  #disk = { at: -Infinity, ok: true }
  /** When each kind of alarm was last raised. */
  readonly #alarmed = new Map<AlarmKind, number>()

  /** `queued`: how many mails the spool holds now. */
  constructor(deps: { config: Config; log: Logger; events: EventSink; clock: Clock; dir: string; queued: () => number }) {
    this.#config = deps.config.spool
    this.#log = deps.log
    this.#events = deps.events
    this.#clock = deps.clock
    this.#dir = deps.dir
    this.#queued = deps.queued
  }

  /** Throws the GatewayError a submission must be answered with, if one more mail would break a limit. */
  check(): void {
    // S11: the alarms are looked at whenever the limits are (at most once a second), so an alarm
    // always comes before the first 452 — also when a disk fills faster than the minute check.
    if (this.#queued() >= this.#config.maxMessages) {
      this.checkAlarms()
      throw new GatewayError('EQUEUE_FULL')
    }
    const now = this.#clock.now()
    if (now - this.#disk.at > 1000) {
      this.#disk = { at: now, ok: this.#freePercent() >= this.#config.reservePercent }
      this.checkAlarms()
    }
    if (!this.#disk.ok) {
      this.checkAlarms()
      throw new GatewayError('EQUEUE_DISK_FULL')
    }
  }

  /** A write found the disk full: refuse until the next look finds room, and say so. */
  diskFull(): void {
    this.#disk = { at: this.#clock.now(), ok: false }
    this.checkAlarms()
  }

  /** Runs a spool write: a full disk (ENOSPC, EDQUOT) is noted (`diskFull`) and becomes EQUEUE_DISK_FULL. */
  async writing<T>(write: () => Promise<T>): Promise<T> {
    try {
      return await write()
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'ENOSPC' && code !== 'EDQUOT') throw err
      this.diskFull()
      throw new GatewayError('EQUEUE_DISK_FULL', undefined, { cause: err })
    }
  }

  /**
   * S11: warns before the limits bite — the queue near `maxMessages`, free disk
   * near the reserve — so operators act before submissions get 452. Each kind
   * at most once an hour while it lasts. Called every minute.
   */
  checkAlarms(): void {
    const c = this.#config
    const now = this.#clock.now()
    const raise = (kind: AlarmKind, value: number, limit: number, message: string) => {
      if (now - (this.#alarmed.get(kind) ?? -Infinity) < 3_600_000) return
      this.#alarmed.set(kind, now)
      this.#log.error({ kind, value, limit }, message)
      this.#events.emit({ type: 'spool.alarm', kind, value, limit })
    }
    const queued = this.#queued()
    if (queued >= Math.floor((c.maxMessages * c.alarmPercent) / 100))
      raise('queue', queued, c.maxMessages, 'spool is filling up: submissions will be refused at spool.maxMessages')
    const freePercent = this.#freePercent()
    if (freePercent < 2 * c.reservePercent)
      raise(
        'disk',
        Math.floor(freePercent * 10) / 10,
        c.reservePercent,
        'spool disk is running low: submissions will be refused below spool.reservePercent free',
      )
  }

  /** Free space on the spool's filesystem, as the unprivileged box sees it (bavail). */
  #freePercent(): number {
    const st = statfsSync(this.#dir)
    return (st.bavail / st.blocks) * 100
  }
}
