/**
 * How the daemon's process should be started, in one place: `npm start`,
 * the systemd unit and the tests' daemon launcher all use it (a test keeps
 * package.json in step).
 *
 * glibc's malloc keeps memory freed by a large allocation for reuse instead
 * of returning it to the system once such allocations have been seen (its
 * mmap threshold adapts upwards, to 32 MB). Mail passes through the box in
 * buffers of up to 30 MB, so with the adaptive threshold the process kept
 * about 300 MB more than it used under load (measured: 50 clients sending
 * 25 MB each, peak RSS 574 MB against 286 MB with a fixed threshold). A fixed
 * threshold makes every buffer above it its own mapping, returned when freed;
 * two arenas keep worker threads from each holding their own.
 *
 * #35: the threshold is 4 MiB, not 128 KiB. Every buffer of its own mapping
 * is page-faulted in when first touched and unmapped when freed, and a mail
 * makes several (the message read, signed, encrypted, decrypted): with 128 KiB
 * a 1 MB statement cost the box 72–73 ms of CPU against 38–40 ms with 4 MiB
 * (smtp-source driven by bench/postfix-load.ts, 150 mails of 1 MB, 8
 * sessions, two runs each, 2026-12-07), and AES-GCM over 1 MB took 8.5 ms
 * against 0.3. Statements of up to 4 MiB now
 * reuse the heap; the 25 MB mails still get mappings of their own. What 50
 * concurrent 25 MB submissions add to resident memory is the same (221 and
 * 219 MB; budget 256); with 60 concurrent 3.7 MB ones 202–222 MB against
 * 200–215, and 56 MB more stay resident after them.
 *
 * libuv's thread pool runs every fsync, file write, SoftHSM call and scrypt
 * check; with Node's default four threads, four signatures in flight made the
 * journal's fsync wait, and the time from a receiver's 250 to the journal
 * recording it (a crash in between sends the mail again) reached p99 216 ms
 * under six submitters. Sixteen threads (mostly waiting on the disk or the
 * HSM, so cheap), and scrypt limited to two at a time (submission/auth.ts).
 */
export const DAEMON_ENV = { MALLOC_MMAP_THRESHOLD_: '4194304', MALLOC_ARENA_MAX: '2', UV_THREADPOOL_SIZE: '16' } as const

/** Node options the daemon runs with: a small young generation (see docs/benchmarks.md, spool). */
export const DAEMON_NODE_ARGS = ['--max-semi-space-size=4'] as const

/** The settings missing from this process's environment (the daemon warns at start). */
export function missingDaemonEnv(env: NodeJS.ProcessEnv): string[] {
  return Object.entries(DAEMON_ENV)
    .filter(([k, v]) => env[k] !== v)
    .map(([k, v]) => `${k}=${v}`)
}
