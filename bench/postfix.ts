/**
 * The box against Postfix, side by side in one run (issue: Benchmark against
 * Postfix; M3, M14).
 *
 *   npm run bench:postfix [-- --mails 2000 --sessions 32 --rounds 3 --latency-seconds 20]
 *
 * Both get the same load from Postfix's own `smtp-source` (60 KB mails, one
 * recipient, `sessions` parallel sessions), in two variants — one mail per
 * connection, and many per connection (`-d`) — with runs alternating box,
 * Postfix, box, Postfix…; medians are reported. Each delivers to its own
 * `smtp-sink` (from the postfix package) on loopback.
 *
 * - Postfix: a plain relay instance with its own config and queue directory
 *   (inet_interfaces = loopback-only, relayhost = the sink, mynetworks =
 *   127.0.0.0/8, no chroot), started with `postfix -c DIR start`.
 * - The box: the daemon as a child process on the pinned runtime, S/MIME and
 *   DKIM in a SoftHSM2 token, the policy gate, the encrypted spool with fsync,
 *   the audit trail; shaping lifted (10 Gbit/s) and 20 connections to the sink
 *   (Postfix's default destination concurrency). smtp-source speaks neither
 *   STARTTLS nor AUTH, so both take the load as a trusted network in clear.
 *
 * - For analysis, a second box with no signing domain (policy, encrypted
 *   spool, audit trail and delivery, but no S/MIME or DKIM): the difference
 *   is what the two RSA signatures in SoftHSM cost on these cores.
 *
 * Reported per system: mails/s accepted (until smtp-source finished), mails/s
 * delivered end to end (until the sink had them all), the box's CPU seconds
 * and peak resident memory, and submission latency p50/p99 at a fixed offered
 * rate of 50 mails/s (one mail per connection; measured after the greeting,
 * so smtp-server's fixed 100 ms early-talker pause is left out and shown
 * apart). Writes bench/results/postfix.json and postfix.svg (throughput over time).
 * Needs root (Postfix's master) and Postfix (`bash provisioning/os-packages.sh`).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, chownSync, copyFileSync, createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { cpus, tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { firmToken } from './firm-token.ts'
import { freePort, machineBusySeconds, procStat, sleep, waitPort } from './host.ts'
import { median, svg, type Run, type System } from './postfix-chart.ts'

const { values } = parseArgs({
  options: {
    mails: { type: 'string', default: '2000' },
    sessions: { type: 'string', default: '32' },
    rounds: { type: 'string', default: '3' },
    'latency-seconds': { type: 'string', default: '20' },
    /** Writes a V8 CPU profile of the box to this directory (node --cpu-prof). */
    profile: { type: 'string' },
    /** Node options for the box (default: those of `npm start`). */
    'node-args': { type: 'string', default: '--max-semi-space-size=4' },
  },
})
const MAILS = Number(values.mails)
const SESSIONS = Number(values.sessions)
const ROUNDS = Number(values.rounds)
const LATENCY_SECONDS = Number(values['latency-seconds'])
const SIZE = 60 * 1024
const MAIN = new URL('../firmware/main.ts', import.meta.url).pathname
const say = (s: string) => process.stderr.write(`${s}\n`)

for (const tool of ['postfix', 'smtp-source', 'smtp-sink']) {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' })
  } catch {
    say(`bench:postfix needs ${tool}: run  bash provisioning/os-packages.sh`)
    process.exit(1)
  }
}
if (userInfo().uid !== 0) {
  say('bench:postfix needs root (Postfix runs its own master process)')
  process.exit(1)
}

const work = mkdtempSync(join(tmpdir(), 'sg-bench-postfix-'))
chmodSync(work, 0o755)
const children: ChildProcess[] = []
let postfixConf: string | undefined
function cleanup(): void {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
  if (postfixConf) {
    try {
      execFileSync('postfix', ['-c', postfixConf, 'stop'], { stdio: 'ignore' })
    } catch {
      // not running: nothing to stop
    }
  }
  rmSync(work, { recursive: true, force: true })
}
process.on('SIGINT', () => (cleanup(), process.exit(130)))

/** A running counter from smtp-sink/smtp-source `-c` output ("… mesg=N\r" or "N\r"). */
function counter(proc: ChildProcess, pattern: RegExp): { value: number } {
  const c = { value: 0 }
  proc.stdout!.setEncoding('latin1').on('data', (d: string) => {
    const all = [...d.matchAll(pattern)]
    const last = all.at(-1)
    if (last) c.value = Number(last[1])
  })
  return c
}

function startSink(port: number): { value: number } {
  const p = spawn('smtp-sink', ['-u', 'nobody', '-c', `127.0.0.1:${port}`, '1024'], { stdio: ['ignore', 'pipe', 'inherit'] })
  children.push(p)
  return counter(p, /mesg=(\d+)/g)
}

// --- Postfix, a plain relay on loopback ---------------------------------------
async function startPostfix(port: number, sinkPort: number): Promise<void> {
  const dir = join(work, 'postfix')
  const conf = join(dir, 'conf')
  for (const d of [conf, join(dir, 'queue'), join(dir, 'data')]) mkdirSync(d, { recursive: true })
  chownSync(join(dir, 'data'), Number(execFileSync('id', ['-u', 'postfix']).toString().trim()), 0)
  copyFileSync('/etc/postfix/master.cf', join(conf, 'master.cf'))
  const master = readFileSync(join(conf, 'master.cf'), 'utf8').replace(/^smtp\s+inet\s.*$/m, `127.0.0.1:${port} inet n - n - - smtpd`)
  writeFileSync(join(conf, 'master.cf'), master)
  writeFileSync(
    join(conf, 'main.cf'),
    [
      'compatibility_level = 3.6',
      'myhostname = postfix-bench.localhost',
      `queue_directory = ${join(dir, 'queue')}`,
      `data_directory = ${join(dir, 'data')}`,
      'inet_interfaces = loopback-only',
      'inet_protocols = ipv4',
      'mydestination =',
      'mynetworks = 127.0.0.0/8',
      `relayhost = [127.0.0.1]:${sinkPort}`,
      'smtpd_relay_restrictions = permit_mynetworks, reject',
      'smtpd_peername_lookup = no',
      // Postfix only writes its own log file under /var (maillog_file_prefixes).
      `maillog_file = /var/tmp/${work.split('/').pop()}-postfix.log`,
      '',
    ].join('\n'),
  )
  execFileSync('postconf', ['-c', conf, '-F', '*/*/chroot = n'])
  execFileSync('postfix', ['-c', conf, 'check'], { stdio: 'inherit' })
  execFileSync('postfix', ['-c', conf, 'start'], { stdio: 'inherit' })
  postfixConf = conf
  await waitPort(port)
}

// --- The box, as a daemon child process ---------------------------------------
async function startBox(port: number, sinkPort: number, signing: boolean): Promise<ChildProcess> {
  const dataDir = join(work, signing ? 'box' : 'box-unsigned')
  mkdirSync(dataDir, { recursive: true })
  const hsm = await firmToken(dataDir, 4)
  await hsm.close()
  const config = {
    dataDir,
    log: { level: 'warn' },
    hsm: { tokenLabel: 'bench' },
    submission: { starttlsPort: port, implicitTlsPort: 0, requireTls: false, trustedNetworks: ['127.0.0.0/8'], maxClients: 1000 },
    policy: { profiles: [{ name: 'securities', domains: ['bank.example'], attachmentTypes: [] }] },
    signing: { domains: !signing ? [] : [{ domain: 'bank.example', smimeKey: 'smime/bank', dkimSelector: 'sg1' }] },
    spool: { verifyOnStart: false },
    delivery: {
      bandwidthBitsPerSecond: 10_000_000_000,
      routes: [{ domain: '*', host: '127.0.0.1', port: sinkPort }],
      perDestinationConnections: 20,
      maxConnections: 32,
    },
  }
  writeFileSync(join(dataDir, 'config.json'), JSON.stringify(config))
  const profile = values.profile ? ['--cpu-prof', '--cpu-prof-dir', values.profile] : []
  const box = spawn(process.execPath, [...values['node-args'].split(' ').filter(Boolean), ...profile, MAIN, '--config', join(dataDir, 'config.json')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.push(box)
  let err = ''
  // The box's log (level warn) is kept, and its tail printed if a run fails.
  const logFile = createWriteStream(join(tmpdir(), `${work.split('/').pop()}-${signing ? 'box' : 'box-unsigned'}.log`))
  box.stdout.pipe(logFile)
  await new Promise<void>((resolve, reject) => {
    box.stderr.setEncoding('utf8').on('data', (d: string) => {
      err += d
      if (err.includes('Statement Gateway is running')) resolve()
    })
    box.on('exit', (code) => reject(new Error(`the box exited (${code}): ${err}`)))
  })
  return box
}

async function run(system: System, port: number, sink: { value: number }, many: boolean, boxPid?: number): Promise<Run> {
  const before = sink.value
  const cpu0 = boxPid ? procStat(boxPid).cpuSeconds : 0
  const machine0 = machineBusySeconds()
  let peak = 0
  const args = [
    '-c',
    '-s',
    String(SESSIONS),
    '-m',
    String(MAILS),
    '-l',
    String(SIZE),
    '-S',
    'Monthly statement',
    '-f',
    'statements@bank.example',
    '-t',
    'customer@example.net',
  ]
  if (many) args.unshift('-d')
  const t0 = performance.now()
  const source = spawn('smtp-source', [...args, `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(source)
  let sourceErr = ''
  source.stderr.setEncoding('utf8').on('data', (d: string) => (sourceErr += d))
  const accepted = counter(source, /(\d+)\r/g)
  const series: Run['series'] = []
  const sampler = setInterval(() => {
    series.push({ t: (performance.now() - t0) / 1000, accepted: accepted.value, delivered: sink.value - before })
    if (boxPid) peak = Math.max(peak, procStat(boxPid).rss)
  }, 250)
  const code = await new Promise<number | null>((r) => source.on('exit', r))
  const acceptedSeconds = (performance.now() - t0) / 1000
  if (code !== 0) throw new Error(`smtp-source against ${system} failed (${code}): ${sourceErr.slice(-500)}`)
  const deadline = Date.now() + 900_000
  while (sink.value - before < MAILS) {
    if (Date.now() > deadline) throw new Error(`${system}: only ${sink.value - before} of ${MAILS} delivered`)
    await sleep(20)
  }
  const deliveredSeconds = (performance.now() - t0) / 1000
  clearInterval(sampler)
  series.push({ t: deliveredSeconds, accepted: MAILS, delivered: MAILS })
  const r: Run = {
    system,
    variant: many ? 'many per connection' : 'one per connection',
    acceptedPerSecond: MAILS / acceptedSeconds,
    deliveredPerSecond: MAILS / deliveredSeconds,
    machineCpuSeconds: machineBusySeconds() - machine0,
    series,
  }
  if (boxPid) {
    r.boxCpuSeconds = procStat(boxPid).cpuSeconds - cpu0
    r.boxPeakRss = Math.max(peak, procStat(boxPid).rss)
  }
  say(
    `  ${system.padEnd(7)} ${r.variant}: accepted ${r.acceptedPerSecond.toFixed(0)}/s, delivered ${r.deliveredPerSecond.toFixed(0)}/s, machine CPU ` +
      `${r.machineCpuSeconds.toFixed(1)} s${r.boxCpuSeconds ? `, of it the box ${r.boxCpuSeconds.toFixed(1)} s` : ''}`,
  )
  return r
}

/** One mail per connection at a fixed offered rate; times after the greeting (and the greeting apart). */
async function latency(port: number, rate: number, seconds: number): Promise<{ p50: number; p99: number; greetingP50: number; count: number }> {
  const body = Buffer.from(
    `From: <statements@bank.example>\r\nTo: <customer@example.net>\r\nSubject: Monthly statement\r\nMessage-ID: <lat-${Date.now()}@bank.example>\r\n\r\n` +
      `${'X'.repeat(76)}\r\n`.repeat(Math.floor(SIZE / 78)) +
      '.\r\n',
  )
  const after: number[] = []
  const greeting: number[] = []
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const start = performance.now()
      let greeted = 0
      const s: Socket = connect(port, '127.0.0.1')
      const steps = [
        'EHLO latency.localhost\r\n',
        'MAIL FROM:<statements@bank.example>\r\n',
        'RCPT TO:<customer@example.net>\r\n',
        'DATA\r\n',
        body,
        'QUIT\r\n',
      ]
      let buf = ''
      s.setEncoding('latin1')
      s.on('data', (d: string) => {
        buf += d
        // A complete reply: its last line has a space after the code.
        const lines = buf.split('\r\n')
        if (!lines.slice(0, -1).some((l) => /^\d{3} /.test(l))) return
        const code = Number(buf.slice(0, 3))
        buf = ''
        if (code >= 400) return (s.destroy(), reject(new Error(`latency probe got ${code}`)))
        if (!greeted) greeted = performance.now()
        const next = steps.shift()
        if (next === 'QUIT\r\n') {
          after.push(performance.now() - greeted)
          greeting.push(greeted - start)
        }
        if (next === undefined) return (s.end(), resolve())
        s.write(next)
      })
      s.on('error', reject)
    })
  const pending: Promise<void>[] = []
  const t0 = performance.now()
  for (let i = 0; i < rate * seconds; i++) {
    const due = t0 + (i * 1000) / rate
    const wait = due - performance.now()
    if (wait > 0) await sleep(wait)
    pending.push(one())
  }
  await Promise.all(pending)
  const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!
  return { p50: q(after, 0.5), p99: q(after, 0.99), greetingP50: q(greeting, 0.5), count: after.length }
}

try {
  const [sinkBoxPort, sinkBarePort, sinkPfPort, pfPort, boxPort, barePort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ]
  const sinkBox = startSink(sinkBoxPort)
  const sinkBare = startSink(sinkBarePort)
  const sinkPf = startSink(sinkPfPort)
  await Promise.all([waitPort(sinkBoxPort), waitPort(sinkBarePort), waitPort(sinkPfPort)])
  say('starting Postfix and the box (twice: as shipped, and for comparison without the two HSM signatures)')
  await startPostfix(pfPort, sinkPfPort)
  const box = await startBox(boxPort, sinkBoxPort, true)
  const bare = await startBox(barePort, sinkBarePort, false)
  await Promise.all([waitPort(boxPort), waitPort(barePort)])

  const runs: Run[] = []
  for (const many of [false, true]) {
    say(
      `${many ? 'many mails' : 'one mail'} per connection: ${ROUNDS} rounds of ${MAILS} mails, ${SESSIONS} sessions, box / Postfix / box without ` +
        `signatures in turn`,
    )
    for (let i = 0; i < ROUNDS; i++) {
      runs.push(await run('box', boxPort, sinkBox, many, box.pid))
      runs.push(await run('postfix', pfPort, sinkPf, many))
      runs.push(await run('box, no signatures', barePort, sinkBare, many, bare.pid))
    }
  }
  say(`latency at 50 mails/s for ${LATENCY_SECONDS} s`)
  const latBox = await latency(boxPort, 50, LATENCY_SECONDS)
  const latPf = await latency(pfPort, 50, LATENCY_SECONDS)

  const variants = [...new Set(runs.map((r) => r.variant))].map((variant) => {
    const of = (system: string) => runs.filter((r) => r.variant === variant && r.system === system)
    const b = of('box')
    const p = of('postfix')
    const u = of('box, no signatures')
    const accepted = { box: median(b.map((r) => r.acceptedPerSecond)), postfix: median(p.map((r) => r.acceptedPerSecond)) }
    const delivered = { box: median(b.map((r) => r.deliveredPerSecond)), postfix: median(p.map((r) => r.deliveredPerSecond)) }
    return {
      variant,
      acceptedPerSecond: { box: Math.round(accepted.box), postfix: Math.round(accepted.postfix), ratio: Number((accepted.box / accepted.postfix).toFixed(3)) },
      deliveredPerSecond: {
        box: Math.round(delivered.box),
        postfix: Math.round(delivered.postfix),
        ratio: Number((delivered.box / delivered.postfix).toFixed(3)),
      },
      boxCpuSecondsPer1000Mails: Number(((median(b.map((r) => r.boxCpuSeconds!)) / MAILS) * 1000).toFixed(2)),
      boxPeakRssMB: Math.round(Math.max(...b.map((r) => r.boxPeakRss!)) / 2 ** 20),
      machineCpuSecondsPer1000Mails: {
        box: Number(((median(b.map((r) => r.machineCpuSeconds)) / MAILS) * 1000).toFixed(2)),
        postfix: Number(((median(p.map((r) => r.machineCpuSeconds)) / MAILS) * 1000).toFixed(2)),
        boxWithoutSignatures: Number(((median(u.map((r) => r.machineCpuSeconds)) / MAILS) * 1000).toFixed(2)),
      },
      withoutSignatures: {
        acceptedPerSecond: Math.round(median(u.map((r) => r.acceptedPerSecond))),
        deliveredPerSecond: Math.round(median(u.map((r) => r.deliveredPerSecond))),
        acceptedRatio: Number((median(u.map((r) => r.acceptedPerSecond)) / accepted.postfix).toFixed(3)),
        deliveredRatio: Number((median(u.map((r) => r.deliveredPerSecond)) / delivered.postfix).toFixed(3)),
        cpuSecondsPer1000Mails: Number(((median(u.map((r) => r.boxCpuSeconds!)) / MAILS) * 1000).toFixed(2)),
      },
    }
  })
  const round = (x: number) => Number(x.toFixed(1))
  const summary = {
    date: new Date().toISOString().slice(0, 10),
    machine: `${cpus().length} cores, ${cpus()[0]?.model}`,
    node: process.version,
    postfix: execFileSync('postconf', ['-d', '-h', 'mail_version']).toString().trim(),
    load: { mails: MAILS, bytes: SIZE, sessions: SESSIONS, rounds: ROUNDS },
    variants,
    latencyAt50PerSecond: {
      box: { p50Ms: round(latBox.p50), p99Ms: round(latBox.p99), greetingP50Ms: round(latBox.greetingP50), mails: latBox.count },
      postfix: { p50Ms: round(latPf.p50), p99Ms: round(latPf.p99), greetingP50Ms: round(latPf.greetingP50), mails: latPf.count },
    },
  }
  const results = join(import.meta.dirname, 'results')
  mkdirSync(results, { recursive: true })
  writeFileSync(join(results, 'postfix.json'), `${JSON.stringify(summary, null, 2)}\n`)
  writeFileSync(join(results, 'postfix.svg'), svg(runs, { mails: MAILS, sessions: SESSIONS }))
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`)
  // A clean stop, so a --profile is written.
  for (const b of [box, bare]) {
    b.kill('SIGTERM')
    await Promise.race([new Promise((r) => b.on('exit', r)), sleep(30_000)])
  }
} finally {
  cleanup()
}
