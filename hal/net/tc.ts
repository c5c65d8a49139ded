import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { halError } from '../errors.ts'

const run = promisify(execFile)

/**
 * Kernel shaping on the egress NICs (M3): a token bucket filter (tc-tbf) as
 * the root qdisc, so the NIC itself never sends faster than the budget, even
 * for traffic the box does not generate through its own limiter. Needs
 * CAP_NET_ADMIN; on a development machine it stays off.
 */
export async function applyTbf(device: string, bitsPerSecond: number, opts: { netns?: string } = {}): Promise<void> {
  if (!/^[A-Za-z0-9_.:-]{1,15}$/.test(device)) throw halError('ENET_INVALID', `"${device}" is not a network device name`)
  // A burst of 1 % of a second (at least a few full-size frames) keeps every second within ~1 % of the rate.
  const burst = Math.max(16 * 1024, Math.floor(bitsPerSecond / 8 / 100))
  const args = ['qdisc', 'replace', 'dev', device, 'root', 'tbf', 'rate', `${bitsPerSecond}bit`, 'burst', String(burst), 'latency', '50ms']
  await (opts.netns ? run('ip', ['netns', 'exec', opts.netns, 'tc', ...args]) : run('tc', args))
}

/** The root qdisc of a device as `tc qdisc show` prints it. */
export async function showQdisc(device: string, opts: { netns?: string } = {}): Promise<string> {
  const args = ['qdisc', 'show', 'dev', device]
  const { stdout } = await (opts.netns ? run('ip', ['netns', 'exec', opts.netns, 'tc', ...args]) : run('tc', args))
  return stdout.trim()
}
