import { group, str, type AuditRecord, type LedgerWrites, type Row } from './ledger-writes.ts'

/**
 * What comes back after delivery (M8, M9, M11), applied to the ledger: a DSN
 * or MDN from the return path, a read by the evidence a class counts, a
 * statement that ended read or unread, and opens and clicks from tracking.
 */

/**
 * M8, M11: a report that came back. A DSN that says failed turns a delivered recipient into
 * bounced, with its category, and owes paper; an MDN "displayed" is the read; anything
 * else (a delay, a deleted-unread MDN, an auto-reply, a complaint, a report about a
 * recipient already final, one no token tied to a statement) is counted, changing nothing.
 */
export async function returned(w: LedgerWrites, r: AuditRecord): Promise<void> {
  const id = str(r.id)
  const row = id === undefined ? undefined : (await w.rows(id)).find((x) => x.idx === Number(r.recipient))
  const at = w.time()
  if (!id || !row) {
    const day = w.ctx.dayOf(at)
    return w.detail({ day, batch: day, account: '', cls: '' }, 'report', 'unmatched')
  }
  const g = group(row)
  const where = [w.box, id, row.idx]
  const kind = str(r.kind) ?? 'unknown'
  if (kind === 'dsn' && r.action === 'failed') {
    if (row.state !== 'delivered' && row.state !== 'accepted') return w.detail(g, 'report', 'after-final')
    const category = str(r.category) ?? 'unclassified'
    const hard = r.hard === true
    const reply = str(r.reply) ?? ''
    const paper = `bounced: ${category}`
    row.state = 'bounced'
    await w.run(
      'UPDATE recipients SET state = ?, bounced_at = ?, bounce_reason = ?, bounce_hard = ?, last_reply = ?, paper_owed_at = ?, paper_reason = ? ' +
        'WHERE box = ? AND id = ? AND idx = ?',
      ['bounced', at, category, hard ? 1 : 0, reply, at, paper, ...where],
    )
    await w.count(g, hard ? 'bounced_hard' : 'bounced_soft')
    await w.detail(g, 'bounce', category)
    await w.detail(g, 'report', 'bounce')
    await w.count(g, 'paper_owed')
    await w.hook('bounced', id, g, row.idx, row.rcpt_mask, { reason: category, hard, status: str(r.status), reply, async: true })
    await w.hook('paper_owed', id, g, row.idx, row.rcpt_mask, { reason: paper })
    return
  }
  if (kind === 'mdn' && r.disposition === 'displayed') {
    await w.detail(g, 'report', row.read_at === null ? 'read' : 'read-again')
    return read(w, id, row, 'mdn', str(r.dispositionMode))
  }
  const what = kind === 'dsn' ? `dsn-${str(r.action) ?? 'unknown'}` : kind === 'mdn' ? `mdn-${str(r.disposition) || 'unknown'}` : kind
  await w.detail(g, 'report', what)
}

/** M11: the first read of a recipient's statement, by whatever evidence its class counts (an MDN, a confirmation, an open). */
export async function read(w: LedgerWrites, id: string, row: Row, evidence: string, mode?: string): Promise<void> {
  if (row.read_at !== null) return
  const at = w.time()
  row.read_at = at
  const g = group(row)
  await w.run('UPDATE recipients SET read_at = ? WHERE box = ? AND id = ? AND idx = ?', [at, w.box, id, row.idx])
  await w.count(g, 'read')
  await w.hook('read', id, g, row.idx, row.rcpt_mask, { evidence, ...(mode ? { mode } : {}) })
}

/** M11: a statement ended as read: the evidence its class counts (an open, a confirmation) is the read, if no MDN was already. */
export async function endedRead(w: LedgerWrites, id: string, reason: string): Promise<void> {
  const evidence = /\((mdn|open|confirm-link)\)/.exec(reason)?.[1] ?? 'mdn'
  for (const row of await w.rows(id)) if (row.state === 'delivered') await read(w, id, row, evidence)
}

/** M11: an awaiting statement's time for its read receipt ran out: each delivered recipient not read owes paper. */
export async function unread(w: LedgerWrites, id: string, reason: string): Promise<void> {
  const at = w.time()
  const paper = reason.startsWith('no read receipt') ? reason : `no read receipt: ${reason}`
  for (const row of await w.rows(id)) {
    if (row.state !== 'delivered' || row.read_at !== null || row.paper_owed_at !== null) continue
    const g = group(row)
    await w.run('UPDATE recipients SET paper_owed_at = ?, paper_reason = ? WHERE box = ? AND id = ? AND idx = ?', [at, paper, w.box, id, row.idx])
    await w.count(g, 'paper_owed')
    await w.hook('paper_owed', id, g, row.idx, row.rcpt_mask, { reason: paper })
  }
}

/** M9: opens and clicks. A link scanner's fetch is kept in the totals but counts as no one's open or click. */
export async function tracked(w: LedgerWrites, r: AuditRecord): Promise<void> {
  const id = str(r.id) ?? ''
  const row = (await w.rows(id)).find((x) => x.idx === Number(r.recipient))
  if (!row) return
  const g = group(row)
  const agent = str(r.agent) ?? 'unknown'
  const at = w.time()
  const where = [w.box, id, row.idx]
  if (r.type === 'tracking.open') {
    // A person's first open counts as opened; an image proxy's fetch (on arrival, for everyone) counts once
    // apart and does not stand in the way of the person's own open later; a scanner's counts as nothing.
    const person = agent !== 'scanner' && agent !== 'proxy'
    const first = person ? row.opened_at === null : agent === 'proxy' && row.opened_at === null && row.open_agent === null
    if (first && person)
      await w.run('UPDATE recipients SET opens = opens + 1, opened_at = ?, open_agent = ? WHERE box = ? AND id = ? AND idx = ?', [at, agent, ...where])
    else if (first) await w.run('UPDATE recipients SET opens = opens + 1, open_agent = ? WHERE box = ? AND id = ? AND idx = ?', [agent, ...where])
    else await w.run('UPDATE recipients SET opens = opens + 1 WHERE box = ? AND id = ? AND idx = ?', where)
    if (!first) return
    await w.count(g, person ? 'opened' : 'opened_by_proxy')
    if (person) await w.hook('opened', id, g, row.idx, row.rcpt_mask, { agent })
  } else {
    const first = row.clicked_at === null && agent !== 'scanner'
    if (first) await w.run('UPDATE recipients SET clicks = clicks + 1, clicked_at = ? WHERE box = ? AND id = ? AND idx = ?', [at, ...where])
    else await w.run('UPDATE recipients SET clicks = clicks + 1 WHERE box = ? AND id = ? AND idx = ?', where)
    if (!first) return
    await w.count(g, 'clicked')
    await w.hook('clicked', id, g, row.idx, row.rcpt_mask, { agent, link: Number(r.link) })
  }
}
