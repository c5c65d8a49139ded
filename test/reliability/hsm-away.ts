import { renameSync, rmSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { join } from 'node:path'
import { Box, sendOnce } from './box.ts'
import { judgeHsm } from './judge.ts'
import { drain, receiver, routeTo, row } from './mx.ts'

/**
 * The HSM away for 20 s under load, on the shipped settings: tempfails, nothing unsigned leaves,
 * recovery; and (#33) the log and `status --json` (the control command it reads, polled every
 * 250 ms) say unavailable within 1 s of the token going and ready within 2 s of its return.
 */
export async function hsmAway(): Promise<void> {
  const rx = await receiver()
  const box = await Box.create(routeTo(rx.port))
  await box.start()
  const replies = new Map<string, number>()
  const accepted = new Set<string>()
  let stop = false
  let restoredAt = 0
  let firstOkAfter = 0
  let n = 0
  const load = async (k: number) => {
    while (!stop) {
      const id = `H${k}-${++n}`
      const r = await sendOnce(box, id)
      const key = r.code === 250 ? '250' : `${r.code} ${/E[A-Z_]+/.exec(r.text)?.[0] ?? ''}`.trim()
      replies.set(key, (replies.get(key) ?? 0) + 1)
      if (r.code === 250) {
        accepted.add(id)
        if (restoredAt && !firstOkAfter) firstOkAfter = Date.now()
      }
      await sleep(20)
    }
  }
  const polls: { at: number; state: string; error: boolean }[] = []
  const poller = (async () => {
    while (!stop) {
      const at = Date.now()
      const s = await box.status().catch(() => undefined)
      const h = s?.hsm as { state: string; error?: string } | undefined
      if (h) polls.push({ at, state: h.state, error: Boolean(h.error) })
      await sleep(250)
    }
  })()
  const loads = [load(1), load(2), load(3)]
  await sleep(2000)
  const tokens = join(box.dataDir, 'hsm', 'tokens')
  const goneAt = Date.now()
  renameSync(tokens, `${tokens}.away`)
  await sleep(20_000)
  renameSync(`${tokens}.away`, tokens)
  restoredAt = Date.now()
  await sleep(5000)
  stop = true
  await Promise.all([...loads, poller])
  const drained = await drain(box, 60_000)
  const stall = await box.eventLoopMax()
  const lost = [...accepted].filter((id) => !rx.got.has(id)).length
  const recovery = firstOkAfter ? (firstOkAfter - restoredAt) / 1000 : Infinity
  row(
    'HSM away 20 s under load (3 clients, a connection per mail); shipped defaults',
    `replies ${JSON.stringify(Object.fromEntries(replies))}; unsigned mails out ${rx.unsigned()}; accepted mail lost ${lost}; ` +
      `first 250 ${recovery.toFixed(1)} s after the token came back; longest event-loop stall ${stall} ms`,
    rx.unsigned() === 0 && lost === 0 && drained && (replies.get('451 EHSM_UNAVAILABLE') ?? 0) > 0 && recovery < 10,
  )
  const first = (ts: number[], from: number) => ts.filter((t) => t >= from).sort((a, b) => a - b)[0]
  const h = judgeHsm({
    goneAt,
    backAt: restoredAt,
    logUnavailableAt: first(box.logTimes('HSM not ready'), goneAt),
    logReadyAt: first(box.logTimes('HSM ready'), restoredAt),
    statusUnavailableAt: polls.find((p) => p.at >= goneAt && p.state === 'unavailable')?.at,
    statusReadyAt: polls.find((p) => p.at >= restoredAt && p.state === 'connected' && !p.error)?.at,
    connectedWithError: polls.filter((p) => p.state === 'connected' && p.error).length,
  })
  row('HSM away: the log and status say so', h.text, h.ok)
  await box.kill('SIGTERM')
  await rx.close()
  rmSync(box.dataDir, { recursive: true, force: true })
}
