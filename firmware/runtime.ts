/**
 * How the daemon's process should be started, in one place: `npm start`,
 * the systemd unit and the tests' daemon launcher all use it (a test keeps
 * package.json in step).
 *
 * glibc's malloc keeps memory freed by a large allocation for reuse instead
 * of returning it to the system once such allocations have been seen (its
 * mmap threshold adapts upwards). Mail passes through the box in buffers of
 * up to 30 MB, so with the adaptive threshold the process kept about 300 MB
 * more than it used under load (measured: 50 clients sending 25 MB each,
 * peak RSS 574 MB against 286 MB with a fixed threshold). A fixed threshold
 * makes every large buffer its own mapping, returned when freed; two arenas
 * keep worker threads from each holding their own.
 *
 * libuv's thread pool runs every fsync, file write, SoftHSM call and scrypt
 * check; with Node's default four threads, four signatures in flight made the
 * journal's fsync wait, and the time from a receiver's 250 to the journal
 * recording it (a crash in between sends the mail again) reached p99 216 ms
 * under six submitters. Sixteen threads (mostly waiting on the disk or the
 * HSM, so cheap), and scrypt limited to two at a time (submission/auth.ts).
 */
export const DAEMON_ENV = { MALLOC_MMAP_THRESHOLD_: '131072', MALLOC_ARENA_MAX: '2', UV_THREADPOOL_SIZE: '16' } as const

/** Node options the daemon runs with: a small young generation (see docs/benchmarks.md, spool). */
export const DAEMON_NODE_ARGS = ['--max-semi-space-size=4'] as const

/** The settings missing from this process's environment (the daemon warns at start). */
export function missingDaemonEnv(env: NodeJS.ProcessEnv): string[] {
  return Object.entries(DAEMON_ENV)
    .filter(([k, v]) => env[k] !== v)
    .map(([k, v]) => `${k}=${v}`)
}
