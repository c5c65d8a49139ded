/**
 * A part of the daemon with a lifecycle (STYLE: zigbee2mqtt). Constructors do
 * no work; start() acquires resources and may fail; stop() releases them and
 * finishes what is in flight. The daemon starts components in order and stops
 * them in reverse.
 */
export interface Component {
  readonly name: string
  start(): Promise<void>
  stop(): Promise<void>
  /**
   * Told at once when the daemon begins to stop, before any component's stop()
   * runs: components that finish work in flight start their part of the one
   * shutdown grace now, so the graces run together, not one after another.
   */
  beginStop?(): void
}
