/**
 * Time as the box sees it. Components take a Clock instead of calling Date.now()
 * so tests can move time forward (the only thing tests fake; STYLE).
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number
}

export const systemClock: Clock = { now: () => Date.now() }
