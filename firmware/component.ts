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
}
