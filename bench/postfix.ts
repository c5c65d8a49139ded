/**
 * The box against Postfix, side by side in one run (M3, M14; #35).
 *
 *   npm run bench:postfix [-- --size 1k,60k,1m --mails 2000 --sessions 32 --rounds 3
 *                             --latency-seconds 20 --skip-bare --skip-latency --profile DIR]
 *
 * Three systems take the same load from Postfix's own `smtp-source`, each
 * delivering to its own `smtp-sink` on loopback, in turn (box, Postfix,
 * Postfix + OpenDKIM, box, …), three rounds; medians are reported:
 *
 * - the box as `npm start` runs it (bench/postfix-peers.ts names the settings
 *   changed for this load: trusted networks, the per-address limit, the route,
 *   shaping lifted);
 * - Postfix as a plain relay (own config and queue directory, no chroot);
 * - Postfix with OpenDKIM as a milter, RSA-2048, signing the header fields the
 *   box's DKIM signs — a peer that also signs (the box signs twice: S/MIME and
 *   DKIM, each with RSA-2048 in SoftHSM2);
 * - for analysis (`--skip-bare` leaves it out), the box with no signing domain.
 *
 * Sizes: 1 KB, 60 KB and 1 MB by default (`--size`), `--mails` of each up to
 * 60 KB and as many megabytes' worth of the larger (at least 100). One mail
 * per connection at every size; many per connection (`-d`) at 60 KB.
 *
 * CPU is each system's own: the box's process tree, Postfix's master with all
 * its children (reaped ones included), OpenDKIM's process counted with its
 * Postfix — never smtp-source's or the sinks'. Per-MB cost = (CPU per 1 MB
 * mail − CPU per 1 KB mail) ÷ the size difference, each system from its own
 * runs. Submission latency at a fixed 50 mails/s, one 60 KB mail per
 * connection, greeting to the 250 after DATA, the greeting apart.
 *
 * Every figure with a target (#35) is judged here; a failed target is printed
 * FAIL and the exit code is 1. The load average at each run's start is kept.
 * Writes bench/results/postfix.json and postfix.svg. Needs root (Postfix's
 * master) and `bash provisioning/os-packages.sh --bench` (Postfix, OpenDKIM).
 */
import { execFileSync } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { sleep } from './host.ts'
import { svg } from './postfix-chart.ts'
import { latency, loadAverage, run, type Latency, type Run } from './postfix-load.ts'
import { Lab, type Peer, type System } from './postfix-peers.ts'
import { judge, summarize } from './postfix-summary.ts'

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '1k,60k,1m' },
    mails: { type: 'string', default: '2000' },
    sessions: { type: 'string', default: '32' },
    rounds: { type: 'string', default: '3' },
    'latency-seconds': { type: 'string', default: '20' },
    'skip-bare': { type: 'boolean', default: false },
    'skip-latency': { type: 'boolean', default: false },
    /** Writes a V8 CPU profile of the box to this directory (node --cpu-prof). */
    profile: { type: 'string' },
  },
})
const KIB = 1024
const parseSize = (s: string) => {
  const m = /^(\d+)([km]?)$/i.exec(s.trim())
  if (!m) throw new Error(`--size: ${s} is not a size (1k, 60k, 1m)`)
  return Number(m[1]) * { '': 1, k: KIB, m: KIB * KIB }[m[2]!.toLowerCase() as '' | 'k' | 'm']
}
const SIZES = values.size.split(',').map(parseSize)
const MAILS = Number(values.mails)
const SESSIONS = Number(values.sessions)
const ROUNDS = Number(values.rounds)
const mailsOf = (bytes: number) => (bytes <= 60 * KIB ? MAILS : Math.max(100, Math.round((MAILS * 60 * KIB) / bytes)))
const say = (s: string) => process.stderr.write(`${s}\n`)

for (const tool of ['postfix', 'smtp-source', 'smtp-sink', 'opendkim']) {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' })
  } catch {
    say(`bench:postfix needs ${tool}: run  bash provisioning/os-packages.sh --bench`)
    process.exit(1)
  }
}
if (userInfo().uid !== 0) {
  say('bench:postfix needs root (Postfix runs its own master process)')
  process.exit(1)
}

const lab = new Lab(mkdtempSync(join(tmpdir(), 'sg-bench-postfix-')))
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => (lab.cleanup(), process.exit(130)))

/** Postfix + OpenDKIM, checked once through a dumping sink: the mail it relays carries OpenDKIM's signature. */
async function signingPostfix(): Promise<Peer> {
  const dkim = await lab.openDkim()
  const dumps = join(lab.work, 'dkim-probe')
  mkdirSync(dumps)
  chmodSync(dumps, 0o777) // smtp-sink writes as nobody
  const probe = await lab.sink(join(dumps, 'm'))
  const pf = await lab.postfix('postfix-dkim', probe.port, dkim.port)
  const source = lab.spawn('smtp-source', [
    '-m',
    '1',
    '-l',
    '2000',
    '-S',
    'Probe',
    '-f',
    'statements@bank.example',
    '-t',
    'c@example.net',
    `127.0.0.1:${pf.port}`,
  ])
  await new Promise((r) => source.on('exit', r))
  for (let i = 0; i < 100 && probe.count.value < 1; i++) await sleep(100)
  const dumped = readdirSync(dumps).map((f) => readFileSync(join(dumps, f), 'latin1'))
  if (!dumped.some((m) => /^DKIM-Signature:.*d=bank\.example/im.test(m))) throw new Error('OpenDKIM did not sign the probe mail')
  const sink = await lab.sink()
  lab.relayTo(pf.conf, sink.port)
  return { system: 'postfix + opendkim', port: pf.port, sink: sink.count, pids: [pf.masterPid, dkim.pid] }
}

try {
  say('starting the box, Postfix, Postfix + OpenDKIM' + (values['skip-bare'] ? '' : ', and the box without signatures'))
  const peers: Peer[] = []
  const boxSink = await lab.sink()
  const box = await lab.box('box', boxSink.port, { sessions: SESSIONS, profile: values.profile })
  peers.push({ system: 'box', port: box.port, sink: boxSink.count, pids: [box.pid] })
  const pfSink = await lab.sink()
  const pf = await lab.postfix('postfix', pfSink.port)
  peers.push({ system: 'postfix', port: pf.port, sink: pfSink.count, pids: [pf.masterPid] })
  peers.push(await signingPostfix())
  if (!values['skip-bare']) {
    const bareSink = await lab.sink()
    const bare = await lab.box('box, no signatures', bareSink.port, { sessions: SESSIONS })
    peers.push({ system: 'box, no signatures', port: bare.port, sink: bareSink.count, pids: [bare.pid] })
  }

  const runs: Run[] = []
  for (const bytes of SIZES) {
    for (const many of bytes === 60 * KIB ? [false, true] : [false]) {
      const mails = mailsOf(bytes)
      say(
        `${bytes} bytes, ${many ? 'many mails' : 'one mail'} per connection: ${ROUNDS} rounds of ${mails} mails, ${SESSIONS} sessions, ` +
          `load ${loadAverage().join(' ')}`,
      )
      for (let i = 0; i < ROUNDS; i++) {
        for (const peer of peers) {
          const r = await run(lab, peer, { many, mails, bytes, sessions: SESSIONS })
          runs.push(r)
          say(
            `  ${peer.system.padEnd(20)} accepted ${r.acceptedPerSecond.toFixed(0)}/s, delivered ${r.deliveredPerSecond.toFixed(0)}/s, ` +
              `CPU ${((r.cpuSeconds / mails) * 1000).toFixed(2)} ms a mail (load ${r.loadAtStart[0]})`,
          )
        }
      }
    }
  }

  const latencies: Partial<Record<System, Latency>> = {}
  if (!values['skip-latency']) {
    for (const peer of peers.filter((p) => p.system !== 'box, no signatures')) {
      say(`latency at 50 mails/s for ${values['latency-seconds']} s: ${peer.system}`)
      latencies[peer.system] = await latency(peer.port, 50, Number(values['latency-seconds']), 60 * KIB)
    }
  }

  const summary = {
    date: new Date().toISOString().slice(0, 10),
    machine: `${cpus().length} cores, ${cpus()[0]?.model}`,
    node: process.version,
    postfix: execFileSync('postconf', ['-d', '-h', 'mail_version']).toString().trim(),
    opendkim: execFileSync('opendkim', ['-V']).toString().split('\n')[0]!.trim(),
    load: { sizes: SIZES, mails: SIZES.map(mailsOf), sessions: SESSIONS, rounds: ROUNDS },
    loadAverageAtStart: runs.map((r) => r.loadAtStart[0]),
    ...summarize(runs, latencies),
  }
  const verdicts = judge(summary)
  const results = join(import.meta.dirname, 'results')
  mkdirSync(results, { recursive: true })
  writeFileSync(join(results, 'postfix.json'), `${JSON.stringify({ ...summary, targets: verdicts }, null, 2)}\n`)
  writeFileSync(
    join(results, 'postfix.svg'),
    svg(
      runs.filter((r) => r.bytes === 60 * KIB),
      { mails: MAILS, sessions: SESSIONS },
    ),
  )
  process.stdout.write(`${JSON.stringify(summary.table, null, 2)}\n`)
  for (const v of verdicts) say(`${v.ok ? 'ok  ' : 'FAIL'} ${v.figure}: ${v.value} (target ${v.target})`)
  for (const p of peers.filter((p) => p.system.startsWith('box'))) await lab.stopBox(p.pids[0]!)
  if (verdicts.some((v) => !v.ok)) process.exitCode = 1
} finally {
  lab.cleanup()
}
