import { group, str, type LedgerWrites, type RecordOf, type Row } from './ledger-writes.ts'

/**
 * What comes back after delivery (M8, M9, M11), applied to the ledger: a DSN
 * or MDN from the return path, a read by the evidence a class counts, a
 * statement that ended read or unread, and opens and clicks from tracking.
 */

/**
 * M8, M11, #30: a report that came back, as the return path decided it
 * (return-path/decide.ts) and the spool acted on it — the ledger applies that
 * record and decides nothing itself, so its rows say what the spool did:
 *
 * - a bounce the spool did not keep (`final`, or `ended`: a hard bounce that ended
 *   a statement awaiting its read) turns a delivered recipient into bounced, with
 *   its category, and owes paper; one the spool keeps awaiting (`awaiting`: soft,
 *   its wait decides) is noted (its reply) and changes no state;
 * - the read: when it ended the statement (`ended`), or when the statement had left
 *   the spool (`final`) and its recipient is delivered and owes no paper (a read of
 *   a statement outside M11 is M9's information); not when the class counts other
 *   evidence (`not-evidence`);
 * - anything else (a delay, an MDN not displayed, a complaint, an auto-reply, a
 *   report of the wrong kind for its token) is counted by why;
 * - a report without a token is unmatched: kept for a person to look at, with the
 *   statement its Message-ID hint points to, and nothing else.
 */
export async function returned(w: LedgerWrites, r: RecordOf<'returnpath.report'>): Promise<void> {
  const id = str(r.id)
  const row = id === undefined || r.matchedBy === 'message-id' ? undefined : (await w.rows(id)).find((x) => x.idx === Number(r.recipient))
  const at = w.time()
  if (!id || !row) return unmatched(w, r)
  const g = group(row)
  const where = [w.box, id, row.idx]
  const d = decisionOf(r)
  if (d.effect === 'bounce' && r.spool === 'awaiting') {
    await w.run('UPDATE recipients SET last_reply = ? WHERE box = ? AND id = ? AND idx = ?', [str(r.reply) ?? '', ...where])
    return w.detail(g, 'report', 'bounce-awaiting')
  }
  if (d.effect === 'bounce') {
    if (row.state !== 'delivered' && row.state !== 'accepted') return w.detail(g, 'report', 'after-final')
    const category = str(r.category) ?? 'unclassified'
    const hard = r.hard === true
    const reply = str(r.reply) ?? ''
    const paper = `bounced: ${category}`
    if (row.state === 'delivered') await w.count(g, 'returned')
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
  if (d.effect === 'read') {
    const counts = r.spool === 'ended' || (r.spool !== 'not-evidence' && row.state === 'delivered' && row.paper_owed_at === null)
    if (!counts) return w.detail(g, 'report', 'read-not-counted')
    await w.detail(g, 'report', row.read_at === null ? 'read' : 'read-again')
    return read(w, id, row, 'mdn', str(r.dispositionMode))
  }
  await w.detail(g, 'report', 'why' in d ? d.why : 'none')
}

/** The decision a record carries; a record from before decisions were written (#30) gets the one its fields imply, kinds checked. */
function decisionOf(r: RecordOf<'returnpath.report'>): { effect: 'bounce' | 'read' } | { effect: 'none'; why: string } {
  if (r.effect === 'bounce' || r.effect === 'read') return { effect: r.effect }
  if (r.effect === 'none') return { effect: 'none', why: str(r.why) ?? 'none' }
  const kind = str(r.kind) ?? 'unknown'
  const token = r.matchedBy === 'verp' ? 'dsn' : r.matchedBy === 'read-receipt-address' ? 'mdn' : ''
  if (kind === 'dsn' && token === 'dsn' && r.action === 'failed') return { effect: 'bounce' }
  if (kind === 'mdn' && token === 'mdn' && r.disposition === 'displayed') return { effect: 'read' }
  if ((kind === 'dsn' || kind === 'mdn') && kind !== token) return { effect: 'none', why: 'mismatched' }
  return { effect: 'none', why: kind === 'dsn' ? `dsn-${str(r.action) ?? 'unknown'}` : kind === 'mdn' ? `mdn-${str(r.disposition) || 'unknown'}` : kind }
}

/** A report no token tied to a statement (#30): counted, and kept for the admin page's list of unmatched reports. */
async function unmatched(w: LedgerWrites, r: RecordOf<'returnpath.report'>): Promise<void> {
  const at = w.time()
  const day = w.ctx.dayOf(at)
  await w.detail({ day, batch: day, account: '', cls: '' }, 'report', 'unmatched')
  await w.run(
    'INSERT INTO unmatched_reports (box, seq, at, day, client, kind, status, category, reply, hint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ' +
      'ON CONFLICT (box, seq) DO NOTHING',
    [
      w.box,
      w.record.seq,
      at,
      day,
      str(r.clientAddress) ?? '',
      str(r.kind) ?? 'unknown',
      str(r.status) ?? '',
      str(r.category) ?? '',
      str(r.reply) ?? '',
      str(r.messageIdHint) ?? null,
    ],
  )
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
export async function tracked(w: LedgerWrites, r: RecordOf<'tracking.open' | 'tracking.click'>): Promise<void> {
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
