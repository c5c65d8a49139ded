import { execFile } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { isIP } from 'node:net'
import { promisify } from 'node:util'
import { halError } from '../errors.ts'
import { cidrProblem } from './cidr.ts'

const run = promisify(execFile)

/**
 * The box's addresses through iproute2 (S8, M2): the management address and
 * the four egress addresses on their NICs, mail from each egress address
 * routed out through the egress NIC's gateway (a routing table of its own,
 * chosen by source address), and a check that each is up and its gateway
 * answers on the local link. Every call is idempotent: what is there already
 * is left as it is.
 */
const DEVICE = /^[A-Za-z0-9_.:-]{1,15}$/

function device(name: string): string {
  if (!DEVICE.test(name)) throw halError('ENET_INVALID', `"${name}" is not a network device name`)
  return name
}

function address(cidr: string): { addr: string; prefix: number } {
  const problem = cidrProblem(cidr)
  if (problem) throw halError('ENET_INVALID', `${cidr} ${problem}`)
  const [addr, prefix] = cidr.split('/')
  return { addr: addr!, prefix: Number(prefix ?? (isIP(addr!) === 6 ? 128 : 32)) }
}

async function ipJson<T>(args: string[]): Promise<T> {
  const { stdout } = await run('ip', ['-j', ...args])
  return JSON.parse(stdout || '[]') as T
}

export interface LinkState {
  name: string
  operstate: string
  mac: string
  addresses: string[]
}

export async function linkState(dev: string): Promise<LinkState> {
  const [l] = await ipJson<{ ifname: string; operstate: string; address: string; addr_info: { local: string; prefixlen: number }[] }[]>([
    'addr',
    'show',
    'dev',
    device(dev),
  ])
  if (!l) throw halError('ENET_INVALID', `no network device ${dev}`)
  return { name: l.ifname, operstate: l.operstate, mac: l.address, addresses: l.addr_info.map((a) => `${a.local}/${a.prefixlen}`) }
}

/** Puts `cidr` on `dev` unless it is there; the device is brought up. Returns whether it was added. */
export async function ensureAddress(dev: string, cidr: string): Promise<boolean> {
  const { addr, prefix } = address(cidr)
  await run('ip', ['link', 'set', device(dev), 'up'])
  const state = await linkState(dev)
  if (state.addresses.some((a) => a.split('/')[0] === addr)) return false
  await run('ip', ['addr', 'add', `${addr}/${prefix}`, 'dev', dev, ...(isIP(addr) === 6 ? ['nodad'] : [])])
  return true
}

/** Mail from `sources` leaves through `gateway` on `dev`: a default route in `table`, and a rule per source address. */
export async function ensureSourceRoutes(table: number, gateway: string, dev: string, sources: readonly string[]): Promise<void> {
  if (!isIP(gateway)) throw halError('ENET_INVALID', `${gateway} is not an IP address`)
  const v6 = isIP(gateway) === 6 ? ['-6'] : []
  await run('ip', [...v6, 'route', 'replace', 'default', 'via', gateway, 'dev', device(dev), 'table', String(table)])
  const rules = await ipJson<{ src?: string; table?: string }[]>([...v6, 'rule', 'show'])
  for (const s of sources) {
    const { addr } = address(s)
    if (!rules.some((r) => r.src === addr && r.table === String(table))) await run('ip', [...v6, 'rule', 'add', 'from', addr, 'table', String(table)])
  }
}

/**
 * Whether `gateway` answers on the local link from `from`: one datagram to its
 * discard port makes the kernel resolve its link-layer address, and the
 * neighbour table then says whether it answered.
 */
export async function gatewayReachable(gateway: string, dev: string, from: string, waitMs = 2000): Promise<boolean> {
  const sock = createSocket(isIP(gateway) === 6 ? 'udp6' : 'udp4')
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject)
    sock.bind(0, address(from).addr, () => resolve())
  })
  await new Promise<void>((resolve) => sock.send(Buffer.from([0]), 9, gateway, () => resolve()))
  sock.close()
  const end = Date.now() + waitMs
  for (;;) {
    const [n] = await ipJson<{ state?: string[] }[]>(['neigh', 'show', gateway, 'dev', device(dev)])
    const state = n?.state ?? []
    if (state.some((s) => ['REACHABLE', 'STALE', 'DELAY', 'PERMANENT'].includes(s))) return true
    if (state.includes('FAILED') || Date.now() > end) return false
    await new Promise((r) => setTimeout(r, 100))
  }
}

/**
 * The same addresses and routes for Debian's ifupdown (`/etc/network/interfaces.d/`),
 * so they come back after a reboot.
 */
export function ifupdownStanzas(o: {
  management: { nic: string; address: string; gateway?: string }
  egress: { nic: string; addresses: readonly string[]; gateway?: string; table: number }
}): string {
  const m = o.management
  const e = o.egress
  const lines = ['# Statement Gateway addresses, written by npm run provision (S8). Run it again to change them.', '']
  lines.push(`auto ${device(m.nic)}`, `iface ${m.nic} inet static`, `    address ${m.address}`, ...(m.gateway ? [`    gateway ${m.gateway}`] : []))
  let extra = [...e.addresses]
  if (e.nic !== m.nic && extra.length) {
    lines.push('', `auto ${device(e.nic)}`, `iface ${e.nic} inet static`, `    address ${extra[0]}`)
    extra = extra.slice(1)
  }
  for (const a of extra) lines.push(`    up ip addr add ${a} dev ${e.nic}`)
  if (e.gateway) {
    lines.push(`    up ip route replace default via ${e.gateway} dev ${e.nic} table ${e.table}`)
    for (const a of e.addresses) lines.push(`    up ip rule add from ${address(a).addr} table ${e.table}`)
  }
  return `${lines.join('\n')}\n`
}
