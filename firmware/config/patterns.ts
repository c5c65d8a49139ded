import { setFlagsFromString } from 'node:v8'

/**
 * The firm's own sensitive-data patterns (`policy.profiles[].patterns`) run
 * over every hostile message, so they run on V8's linear-time regular
 * expression engine (the `l` flag): no pattern, however written, can take
 * more than linear time on a crafted mail. That engine has no backreferences,
 * lookaround, case-insensitive or Unicode mode, and large counted repetitions;
 * a pattern that needs them is refused when the configuration is loaded, with
 * the engine's reason.
 */
let enabled = false

export function compilePattern(source: string): RegExp {
  if (!enabled) {
    setFlagsFromString('--enable-experimental-regexp-engine')
    enabled = true
  }
  return new RegExp(source, 'gl')
}

/** Why a pattern cannot be used, or undefined. */
export function patternProblem(source: string): string | undefined {
  try {
    compilePattern(source)
    return undefined
  } catch (err) {
    const why = (err as Error).message.replace(/^Invalid regular expression: \/.*\/\w*: /, '')
    return (
      `cannot be used as a pattern (${why}): patterns run in linear time, so backreferences, lookaround, the i and u flags and counted repetitions above ` +
      `a few are not available; write [Aa] for a case-insensitive letter`
    )
  }
}
