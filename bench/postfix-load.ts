import { readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { procStat, sleep } from './host.ts'
import { counter, treeCpuSeconds, type Lab, type Peer } from './postfix-peers.ts'

/*
 * The load of bench/postfix.ts: Postfix's own smtp-source against one peer
 * (a run), and a fixed-rate probe of submission latency.
 */

/** One timed run of `mails` mails of `bytes` against one peer. */
export interface Run {
  system: Peer['system']
  variant: 'one per connection' | 'many per connection'
  bytes: number
  mails: number
  /** The 1-, 5- and 15-minute load averages when the run began. */
  loadAtStart: [number, number, number]
  acceptedPerSecond: number
  deliveredPerSecond: number
  /** CPU of the peer's process trees (children reaped included), in seconds. */
  cpuSeconds: number
  /** The box's peak resident memory during the run (the box only). */
  peakRss?: number
  series: { t: number; accepted: number; delivered: number }[]
}

export function loadAverage(): [number, number, number] {
  const [a, b, c] = readFileSync('/proc/loadavg', 'utf8').split(' ').map(Number)
  return [a!, b!, c!]
}

const cpuOf = (peer: Peer) => peer.pids.reduce((s, pid) => s + treeCpuSeconds(pid), 0)

/** smtp-source with `sessions` parallel sessions, one mail per connection or many (`-d`), until the sink has them all. */
export async function run(lab: Lab, peer: Peer, o: { many: boolean; mails: number; bytes: number; sessions: number }): Promise<Run> {
  const before = peer.sink.value
  const loadAtStart = loadAverage()
  const cpu0 = cpuOf(peer)
  const isBox = peer.system.startsWith('box')
  let peak = 0
  const args = ['-c', '-s', String(o.sessions), '-m', String(o.mails), '-l', String(o.bytes), '-S', 'Monthly statement']
  args.push('-f', 'statements@bank.example', '-t', 'customer@example.net')
  if (o.many) args.unshift('-d')
  const t0 = performance.now()
  const source = lab.spawn('smtp-source', [...args, `127.0.0.1:${peer.port}`])
  let sourceErr = ''
  source.stderr!.setEncoding('utf8').on('data', (d: string) => (sourceErr += d))
  const accepted = counter(source, /(\d+)\r/g)
  const series: Run['series'] = []
  const sampler = setInterval(() => {
    series.push({ t: (performance.now() - t0) / 1000, accepted: accepted.value, delivered: peer.sink.value - before })
    if (isBox) peak = Math.max(peak, procStat(peer.pids[0]!).rss)
  }, 250)
  const code = await new Promise<number | null>((r) => source.on('exit', r))
  const acceptedSeconds = (performance.now() - t0) / 1000
  if (code !== 0) throw new Error(`smtp-source against ${peer.system} failed (${code}): ${sourceErr.slice(-500)}`)
  const deadline = Date.now() + 900_000
  while (peer.sink.value - before < o.mails) {
    if (Date.now() > deadline) throw new Error(`${peer.system}: only ${peer.sink.value - before} of ${o.mails} delivered`)
    await sleep(20)
  }
  const deliveredSeconds = (performance.now() - t0) / 1000
  clearInterval(sampler)
  // Postfix's processes may still be finishing their bookkeeping (qmgr, the smtp client's
  // QUIT): a moment for it to settle, counted for every peer alike.
  await sleep(500)
  series.push({ t: deliveredSeconds, accepted: o.mails, delivered: o.mails })
  return {
    system: peer.system,
    variant: o.many ? 'many per connection' : 'one per connection',
    bytes: o.bytes,
    mails: o.mails,
    loadAtStart,
    acceptedPerSecond: o.mails / acceptedSeconds,
    deliveredPerSecond: o.mails / deliveredSeconds,
    cpuSeconds: cpuOf(peer) - cpu0,
    ...(isBox ? { peakRss: Math.max(peak, procStat(peer.pids[0]!).rss) } : {}),
    series,
  }
}

export interface Latency {
  p50Ms: number
  p99Ms: number
  /** Connect to the greeting, apart (median, worst). */
  greetingP50Ms: number
  greetingMaxMs: number
  mails: number
}

/** One mail per connection at a fixed offered rate: greeting to the 250 after DATA, and the greeting apart. */
export async function latency(port: number, rate: number, seconds: number, bytes: number): Promise<Latency> {
  const body = Buffer.from(
    `From: <statements@bank.example>\r\nTo: <customer@example.net>\r\nSubject: Monthly statement\r\nMessage-ID: <lat-${Date.now()}@bank.example>\r\n\r\n` +
      `${'X'.repeat(76)}\r\n`.repeat(Math.floor(bytes / 78)) +
      '.\r\n',
  )
  const after: number[] = []
  const greeting: number[] = []
  const pending: Promise<void>[] = []
  const t0 = performance.now()
  for (let i = 0; i < rate * seconds; i++) {
    const wait = t0 + (i * 1000) / rate - performance.now()
    if (wait > 0) await sleep(wait)
    pending.push(
      oneMail(port, body).then(({ greeted, done }) => {
        greeting.push(greeted)
        after.push(done - greeted)
      }),
    )
  }
  await Promise.all(pending)
  const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!
  const round = (x: number) => Number(x.toFixed(1))
  return {
    p50Ms: round(q(after, 0.5)),
    p99Ms: round(q(after, 0.99)),
    greetingP50Ms: round(q(greeting, 0.5)),
    greetingMaxMs: round(Math.max(...greeting)),
    mails: after.length,
  }
}

/** Greeting, EHLO, MAIL, RCPT, DATA, the message, QUIT; times from the connect (greeted) and to the 250 after DATA (done). */
function oneMail(port: number, body: Buffer): Promise<{ greeted: number; done: number }> {
  return new Promise((resolve, reject) => {
    const start = performance.now()
    let greeted = 0
    const s: Socket = connect(port, '127.0.0.1')
    const steps: (string | Buffer)[] = [
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
      if (
        !buf
          .split('\r\n')
          .slice(0, -1)
          .some((l) => /^\d{3} /.test(l))
      )
        return
      const code = Number(buf.slice(0, 3))
      buf = ''
      if (code >= 400) return (s.destroy(), reject(new Error(`latency probe got ${code}`)))
      if (!greeted) greeted = performance.now()
      const next = steps.shift()
      if (next === 'QUIT\r\n') resolve({ greeted: greeted - start, done: performance.now() - start })
      if (next === undefined) return void s.end()
      s.write(next)
    })
    s.on('error', reject)
    // A server that closes without a reply (or before the 250) fails the probe; it never waits forever.
    s.on('close', () => reject(new Error(`latency probe: connection closed before the 250 (${steps.length} steps left)`)))
  })
}
