/**
 * Crash points for the tests that prove what a crash at a given moment leaves
 * (#33; as SQLite and FoundationDB test their recovery): with
 * `SG_CRASH_AT=<name>` in the box's environment the process kills itself
 * (SIGKILL, like a power cut) when it reaches that point. Inert otherwise; the
 * names are listed here so a test cannot ask for one that does not exist.
 */
export const CRASH_POINTS = ['delivery.after-progress', 'submission.after-spool'] as const
export type CrashPoint = (typeof CRASH_POINTS)[number]

const armed = process.env.SG_CRASH_AT

export function crashPoint(name: CrashPoint): void {
  if (armed === name) process.kill(process.pid, 'SIGKILL')
}
