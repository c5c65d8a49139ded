import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, chownSync, copyFileSync, createWriteStream, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DAEMON_ENV, DAEMON_NODE_ARGS } from '../firmware/runtime.ts'
import { firmToken } from './firm-token.ts'
import { freePort, sleep, waitPort } from './host.ts'

/*
 * The systems bench/postfix.ts compares, each started on loopback with its own
 * smtp-sink: the box as `npm start` runs it, Postfix as a plain relay, and
 * Postfix with OpenDKIM as a milter (#35). Every process is recorded so that
 * its CPU can be counted (with its children, reaped ones included) and so
 * that all of it is stopped at the end.
 */

export type System = 'box' | 'postfix' | 'postfix + opendkim' | 'box, no signatures'

export interface Peer {
  system: System
  port: number
  /** Mails the peer's sink has taken so far. */
  sink: { value: number }
  /** The roots of the peer's process trees (CPU is counted over each tree). */
  pids: number[]
}

/** The DKIM header fields the box signs (firmware/signing/dkim.ts), for OpenDKIM to sign the same. */
const DKIM_HEADERS =
  'from,to,cc,subject,date,message-id,reply-to,mime-version,content-type,content-transfer-encoding,in-reply-to,references,list-id,list-unsubscribe,' +
  'list-unsubscribe-post,disposition-notification-to'

const CLOCK_TICKS = 100

/**
 * CPU seconds of `root` and every process below it: user and system time of
 * each, plus what each has collected from children it reaped (cutime,
 * cstime) — so a Postfix smtpd that served a few connections and exited is
 * counted once its master reaped it, and still counted while it lives.
 */
export function treeCpuSeconds(root: number): number {
  const parent = new Map<number, number>()
  const ticks = new Map<number, number>()
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      parent.set(Number(d), Number(f[1]))
      ticks.set(Number(d), Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]))
    } catch {
      // gone between the listing and the read: its time is in its parent's cutime once reaped
    }
  }
  let sum = 0
  const todo = [root]
  while (todo.length) {
    const pid = todo.pop()!
    sum += ticks.get(pid) ?? 0
    for (const [child, p] of parent) if (p === pid) todo.push(child)
  }
  return sum / CLOCK_TICKS
}

/** Work directory, child processes and Postfix instances of one bench run; `cleanup` stops them all. */
export class Lab {
  readonly work: string
  readonly #children: ChildProcess[] = []
  readonly #postfixConfs: string[] = []

  constructor(work: string) {
    this.work = work
    chmodSync(work, 0o755)
  }

  spawn(cmd: string, args: string[], opts: Parameters<typeof spawn>[2] = {}): ChildProcess {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts })
    this.#children.push(p)
    return p
  }

  cleanup(): void {
    for (const c of this.#children) if (c.exitCode === null) c.kill('SIGKILL')
    for (const conf of this.#postfixConfs) {
      try {
        execFileSync('postfix', ['-c', conf, 'stop'], { stdio: 'ignore' })
      } catch {
        // not running: nothing to stop
      }
    }
    rmSync(this.work, { recursive: true, force: true })
  }

  /** An smtp-sink on a free loopback port; its running count of mails (`-c`). */
  async sink(dump?: string): Promise<{ port: number; count: { value: number } }> {
    const port = await freePort()
    const p = this.spawn('smtp-sink', ['-u', 'nobody', '-c', ...(dump ? ['-d', dump] : []), `127.0.0.1:${port}`, '1024'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    await waitPort(port)
    return { port, count: counter(p, /mesg=(\d+)/g) }
  }

  /** Postfix as a plain relay to `sinkPort` (own config and queue directory, no chroot), or with a milter. */
  async postfix(name: string, sinkPort: number, milterPort?: number): Promise<{ port: number; masterPid: number; conf: string }> {
    const port = await freePort()
    const dir = join(this.work, name)
    const conf = join(dir, 'conf')
    for (const d of [conf, join(dir, 'queue'), join(dir, 'data')]) mkdirSync(d, { recursive: true })
    chownSync(join(dir, 'data'), Number(execFileSync('id', ['-u', 'postfix']).toString().trim()), 0)
    copyFileSync('/etc/postfix/master.cf', join(conf, 'master.cf'))
    const master = readFileSync(join(conf, 'master.cf'), 'utf8').replace(/^smtp\s+inet\s.*$/m, `127.0.0.1:${port} inet n - n - - smtpd`)
    writeFileSync(join(conf, 'master.cf'), master)
    const milter = milterPort ? [`smtpd_milters = inet:127.0.0.1:${milterPort}`, 'milter_default_action = tempfail', 'milter_protocol = 6'] : []
    writeFileSync(
      join(conf, 'main.cf'),
      [
        'compatibility_level = 3.6',
        `myhostname = ${name}.localhost`,
        `queue_directory = ${join(dir, 'queue')}`,
        `data_directory = ${join(dir, 'data')}`,
        'inet_interfaces = loopback-only',
        'inet_protocols = ipv4',
        'mydestination =',
        'mynetworks = 127.0.0.0/8',
        `relayhost = [127.0.0.1]:${sinkPort}`,
        'smtpd_relay_restrictions = permit_mynetworks, reject',
        'smtpd_peername_lookup = no',
        ...milter,
        // Postfix only writes its own log file under /var (maillog_file_prefixes).
        `maillog_file = /var/tmp/${this.work.split('/').pop()}-${name}.log`,
        '',
      ].join('\n'),
    )
    execFileSync('postconf', ['-c', conf, '-F', '*/*/chroot = n'])
    execFileSync('postfix', ['-c', conf, 'check'], { stdio: 'inherit' })
    execFileSync('postfix', ['-c', conf, 'start'], { stdio: 'inherit' })
    this.#postfixConfs.push(conf)
    await waitPort(port)
    const masterPid = Number(readFileSync(join(dir, 'queue', 'pid', 'master.pid'), 'utf8').trim())
    return { port, masterPid, conf }
  }

  /** Points a running Postfix at another sink (postfix reload). */
  relayTo(conf: string, sinkPort: number): void {
    execFileSync('postconf', ['-c', conf, '-e', `relayhost = [127.0.0.1]:${sinkPort}`])
    execFileSync('postfix', ['-c', conf, 'reload'], { stdio: 'ignore' })
  }

  /** OpenDKIM as a signing milter: RSA-2048 (made with openssl), relaxed/relaxed, the header fields the box signs. */
  async openDkim(): Promise<{ port: number; pid: number }> {
    const dir = join(this.work, 'opendkim')
    mkdirSync(dir, { recursive: true })
    const key = join(dir, 'sg1.private')
    execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', key], { stdio: 'ignore' })
    chmodSync(key, 0o600)
    const port = await freePort()
    writeFileSync(
      join(dir, 'opendkim.conf'),
      [
        'Syslog no',
        'Mode s',
        'Domain bank.example',
        'Selector sg1',
        `KeyFile ${key}`,
        'RequireSafeKeys false',
        'Canonicalization relaxed/relaxed',
        'SignatureAlgorithm rsa-sha256',
        `SignHeaders ${DKIM_HEADERS}`,
        'OversignHeaders from,to,subject,date',
        'InternalHosts 127.0.0.0/8',
        `Socket inet:${port}@127.0.0.1`,
        '',
      ].join('\n'),
    )
    const p = this.spawn('opendkim', ['-f', '-x', join(dir, 'opendkim.conf')], { stdio: ['ignore', 'inherit', 'inherit'] })
    await waitPort(port)
    return { port, pid: p.pid! }
  }

  /**
   * The daemon as `npm start` runs it (DAEMON_ENV, DAEMON_NODE_ARGS), S/MIME and
   * DKIM keys in a SoftHSM2 token of its own, every listener on port 0 (the
   * submission port read from its start banner). Settings changed from the
   * shipped defaults, for this load: the two networks it trusts (smtp-source
   * speaks neither STARTTLS nor AUTH), `submission.maxClientsPerAddress` four
   * times the sessions (a new connection can come before the box has counted
   * the previous close), the delivery route to the sink, shaping lifted
   * (10 Gbit/s), and 20 connections to the sink (Postfix's default destination
   * concurrency).
   */
  async box(system: System, sinkPort: number, opts: { sessions: number; profile?: string }): Promise<{ port: number; pid: number }> {
    const signing = system === 'box'
    const dataDir = join(this.work, signing ? 'box' : 'box-unsigned')
    mkdirSync(dataDir, { recursive: true })
    const hsm = await firmToken(dataDir, 4)
    await hsm.close()
    const config = {
      dataDir,
      hsm: { tokenLabel: 'bench' },
      admin: { listen: '127.0.0.1:0' },
      returnPath: { listen: '127.0.0.1:0' },
      reports: { tracking: { listen: '127.0.0.1:0' } },
      submission: {
        starttlsPort: 0,
        implicitTlsPort: 0,
        requireTls: false,
        trustedNetworks: ['127.0.0.0/8'],
        maxClients: 1000,
        maxClientsPerAddress: 4 * opts.sessions,
      },
      policy: { profiles: [{ name: 'securities', domains: ['bank.example'], attachmentTypes: [] }] },
      signing: { domains: !signing ? [] : [{ domain: 'bank.example', smimeKey: 'smime/bank', dkimSelector: 'sg1' }] },
      delivery: {
        bandwidthBitsPerSecond: 10_000_000_000,
        routes: [{ domain: '*', host: '127.0.0.1', port: sinkPort }],
        perDestinationConnections: 20,
        maxConnections: 32,
      },
    }
    writeFileSync(join(dataDir, 'config.json'), JSON.stringify(config))
    const profile = opts.profile ? ['--cpu-prof', '--cpu-prof-dir', opts.profile] : []
    const main = new URL('../firmware/main.ts', import.meta.url).pathname
    const box = this.spawn(process.execPath, [...DAEMON_NODE_ARGS, ...profile, main, '--config', join(dataDir, 'config.json')], {
      env: { ...process.env, ...DAEMON_ENV },
    })
    // The box's log (the shipped level, info) is kept in a file, as a journal would keep it; its tail is printed if it fails.
    const logPath = join(tmpdir(), `${this.work.split('/').pop()}-${signing ? 'box' : 'box-unsigned'}.log`)
    box.stdout!.pipe(createWriteStream(logPath))
    let err = ''
    const port = await new Promise<number>((resolve, reject) => {
      box.stderr!.setEncoding('utf8').on('data', (d: string) => {
        err += d
        const m = /submission STARTTLS\s+\S+:(\d+)/.exec(err)
        if (m && err.includes('Statement Gateway is running')) resolve(Number(m[1]))
      })
      box.on('exit', (code) => reject(new Error(`the box exited (${code}): ${err}\n(log: ${logPath})`)))
    })
    await waitPort(port)
    return { port, pid: box.pid! }
  }

  /** Stops a box with SIGTERM (so a --cpu-prof profile is written). */
  async stopBox(pid: number): Promise<void> {
    process.kill(pid, 'SIGTERM')
    for (let i = 0; i < 300; i++) {
      try {
        process.kill(pid, 0)
      } catch {
        return
      }
      await sleep(100)
    }
  }
}

/** A running counter from smtp-sink/smtp-source `-c` output ("… mesg=N\r" or "N\r"). */
export function counter(proc: ChildProcess, pattern: RegExp): { value: number } {
  const c = { value: 0 }
  proc.stdout!.setEncoding('latin1').on('data', (d: string) => {
    const last = [...d.matchAll(pattern)].at(-1)
    if (last) c.value = Number(last[1])
  })
  return c
}
