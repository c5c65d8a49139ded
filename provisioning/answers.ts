import { isIP } from 'node:net'
import { cidrProblem } from '../hal/net/cidr.ts'
import { createError } from '../firmware/box-errors.ts'

/**
 * What IT answers when it provisions the appliance (`npm run provision`),
 * from `--answers FILE` or, for what the file leaves out, at the terminal.
 * Checked whole before anything on the box changes, each problem named by its
 * key.
 */
export interface Answers {
  hostname: string
  dataDir: string
  inventory: { location: string; owner: string; purpose: string }
  network: {
    management: { nic: string; address: string; gateway?: string }
    egress: { nic: string; addresses: string[]; gateway?: string; ehloNames?: string[] }
    /** SSH to the box from these CIDRs only (none: no SSH through the firewall). */
    sshFrom: string[]
    /** Write the addresses into Debian's network configuration (ifupdown) so they survive a reboot. */
    persist: boolean
  }
  hsm: { embedded: true } | { embedded?: false; module: string; tokenLabel: string; pin?: string; pinFile?: string }
  signing: {
    domain: string
    dkimSelector: string
    returnPath?: string
    /** S/MIME: a key and a CSR for the CA, or the CA's PKCS#12 imported; none: DKIM only until a certificate is imported. */
    smime?: { csrSubject: string; email: string } | { pkcs12: string; passphraseFile: string }
  }[]
  submission: { allowFrom: string[]; accounts: { name: string; allowFrom: string[] }[] }
  delivery: { bandwidthBitsPerSecond: number; tcDevices: string[]; routes: { domain: string; host: string; port: number }[] }
  admin: { port: number; allowFrom: string[] }
  timeZone: string
  firewall: { apply: boolean }
  service: { install: boolean }
}

export class AnswerError extends createError('EANSWERS_INVALID', 'AnswerError') {}

type Ask = (question: string, fallback?: string) => Promise<string>
type Node = Record<string, unknown>
type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] }

const isNode = (v: unknown): v is Node => !!v && typeof v === 'object' && !Array.isArray(v)

/** The object holding the last key of `path` (made on the way), and that key. */
function slot(root: Node, path: string): [Node, string] {
  const parts = path.split('.')
  let o = root
  for (const p of parts.slice(0, -1)) {
    if (!isNode(o[p])) o[p] = {}
    o = o[p] as Node
  }
  return [o, parts.at(-1)!]
}

const list = (s: string) =>
  s
    .split(/[,\s]+/)
    .map((x) => x.trim())
    .filter(Boolean)

/**
 * The answers, completed at the terminal where the file is silent (`ask`
 * undefined: no terminal, so a missing answer is an error naming it).
 */
export async function completeAnswers(given: Node, ask: Ask | undefined): Promise<Answers> {
  const g = structuredClone(given)
  const need = async (path: string, question: string, fallback?: string): Promise<string> => {
    const [o, k] = slot(g, path)
    if (o[k] !== undefined) return typeof o[k] === 'string' ? o[k] : JSON.stringify(o[k])
    if (!ask) {
      if (fallback !== undefined) return String((o[k] = fallback))
      throw new AnswerError(`${path}: no answer given (${question}); add it to the answers file`)
    }
    return String((o[k] = (await ask(question, fallback)) || fallback || ''))
  }
  const needList = async (path: string, question: string, fallback: string[] = []) => {
    const [o, k] = slot(g, path)
    if (Array.isArray(o[k])) return
    const answer = await need(path, `${question} (comma-separated)`, fallback.join(', '))
    o[k] = list(answer)
  }
  const def = (path: string, value: unknown) => {
    const [o, k] = slot(g, path)
    o[k] ??= value
  }
  await need('hostname', 'Host name of the box (its public name, in the TLS certificate and EHLO)')
  await need('dataDir', 'Data directory', '/var/lib/statement-gateway')
  await need('inventory.location', 'Where the box is (site, room, rack, units)')
  await need('inventory.owner', 'Who owns it (department, contact)')
  await need('inventory.purpose', 'What it is for', 'e-statement signing and delivery')
  await need('network.management.nic', 'Management NIC (admin page, submission, SSH)')
  await need('network.management.address', 'Management address with prefix (e.g. 10.10.0.5/24)')
  await need('network.egress.nic', 'Egress NIC (outbound mail)')
  await needList('network.egress.addresses', 'The four egress addresses with prefix')
  await needList('network.sshFrom', 'Networks allowed to SSH to the box')
  def('network.persist', true)
  if (!isNode(g.hsm)) {
    const module = await need('hsm.module', "The HSM vendor's PKCS#11 module (.so), or 'embedded' for a lab box")
    if (module === 'embedded') g.hsm = { embedded: true }
    else await need('hsm.tokenLabel', 'Token label')
  }
  if (!Array.isArray(g.signing))
    g.signing = [{ domain: await need('signingDomain', 'Sender domain of the statements (e.g. bank.example)'), dkimSelector: 'sg1' }]
  delete g.signingDomain
  await needList('submission.allowFrom', "The firm's sending systems (CIDRs)")
  const [sub] = slot(g, 'submission.accounts')
  if (!Array.isArray(sub.accounts)) sub.accounts = [{ name: await need('account', 'Name of the submission account', 'statements'), allowFrom: [] }]
  delete g.account
  const [d] = slot(g, 'delivery.x')
  d.bandwidthBitsPerSecond ??= Number(await need('bandwidth', 'Bandwidth cap in bit/s', '10000000'))
  delete g.bandwidth
  def('delivery.tcDevices', [])
  def('delivery.routes', [])
  def('admin.port', 443)
  await needList('admin.allowFrom', 'Browsers allowed to reach the admin page (CIDRs)')
  await need('timeZone', "The firm's time zone", 'Asia/Taipei')
  def('firewall.apply', true)
  def('service.install', true)
  return checkAnswers(g)
}

/** The whole set checked; every problem named by its key. */
export function checkAnswers(g: Node): Answers {
  const problems: string[] = []
  const cidr = (key: string, v: unknown, withPrefix = false) => {
    if (typeof v !== 'string' || cidrProblem(v)) problems.push(`${key}: ${String(v)} is not an address${withPrefix ? ' with prefix' : ''}`)
    else if (withPrefix && !v.includes('/')) problems.push(`${key}: ${v} needs its prefix (e.g. /24)`)
  }
  const a = g as DeepPartial<Answers>
  if (!/^[a-z0-9.-]+$/i.test(a.hostname ?? '')) problems.push(`hostname: ${a.hostname} is not a host name`)
  cidr('network.management.address', a.network?.management?.address, true)
  const egress = a.network?.egress?.addresses ?? []
  if (egress.length !== 4) problems.push(`network.egress.addresses: four addresses, not ${egress.length}`)
  egress.forEach((x, i) => cidr(`network.egress.addresses[${i}]`, x, true))
  for (const k of ['management', 'egress'] as const) {
    const gw = a.network?.[k]?.gateway
    if (gw !== undefined && !isIP(gw)) problems.push(`network.${k}.gateway: ${gw} is not an IP address`)
  }
  ;(a.network?.sshFrom ?? []).forEach((x, i) => cidr(`network.sshFrom[${i}]`, x))
  ;(a.submission?.allowFrom ?? []).forEach((x, i) => cidr(`submission.allowFrom[${i}]`, x))
  ;(a.admin?.allowFrom ?? []).forEach((x, i) => cidr(`admin.allowFrom[${i}]`, x))
  if (!a.admin?.allowFrom?.length) problems.push('admin.allowFrom: at least one network, or nobody can reach the admin page')
  const hsm = a.hsm
  if (!hsm?.embedded && !(hsm && 'module' in hsm && hsm.module)) problems.push('hsm.module: the vendor module, or { "embedded": true }')
  if (!a.signing?.length) problems.push('signing: at least one sender domain')
  try {
    new Intl.DateTimeFormat('en', { timeZone: a.timeZone })
  } catch {
    problems.push(`timeZone: ${a.timeZone} is not an IANA time zone`)
  }
  if (problems.length) throw new AnswerError(problems.join('\n'))
  return g as unknown as Answers
}
