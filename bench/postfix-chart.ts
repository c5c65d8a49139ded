import type { Run } from './postfix-load.ts'

/** The runs as an SVG chart: mails accepted and delivered over time, one panel per variant (the median run of each system). */
export function svg(runs: Run[], load: { mails: number; sessions: number }): string {
  const { mails: MAILS, sessions: SESSIONS } = load
  const W = 900
  const H = 300
  const pad = 50
  const variants = [...new Set(runs.map((r) => r.variant))]
  const panels = variants.map((variant, vi) => {
    const mine = runs.filter((r) => r.variant === variant)
    // The run with the median delivery rate of each system.
    const pick = (system: string) => {
      const rs = mine.filter((r) => r.system === system).sort((a, b) => a.deliveredPerSecond - b.deliveredPerSecond)
      return rs[Math.floor(rs.length / 2)]!
    }
    const box = pick('box')
    const pf = pick('postfix')
    const tMax = Math.max(box.series.at(-1)!.t, pf.series.at(-1)!.t)
    const x = (t: number) => pad + (t / tMax) * (W - 2 * pad)
    const y = (n: number) => vi * H + H - pad + -(n / MAILS) * (H - 2 * pad)
    const line = (r: Run, key: 'accepted' | 'delivered', color: string, dash: string) =>
      `<polyline fill="none" stroke="${color}" stroke-width="2" ${dash ? `stroke-dasharray="${dash}"` : ''} ` +
      `points="${[{ t: 0, accepted: 0, delivered: 0 }, ...r.series].map((p) => `${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`).join(' ')}"/>`
    const ticks = Array.from({ length: 6 }, (_, i) => (tMax * i) / 5)
    return [
      `<text x="${pad}" y="${vi * H + 20}" font-size="14">${variant}: mails over time ` +
        `(${MAILS} mails of 60 KB, ${SESSIONS} sessions; the median run of each)</text>`,
      `<line x1="${pad}" y1="${y(0)}" x2="${W - pad}" y2="${y(0)}" stroke="#000"/><line x1="${pad}" y1="${y(0)}" x2="${pad}" y2="${y(MAILS)}" stroke="#000"/>`,
      ...ticks.map((t) => `<text x="${x(t)}" y="${y(0) + 16}" font-size="11" text-anchor="middle">${t.toFixed(1)} s</text>`),
      `<text x="${pad - 6}" y="${y(MAILS) + 4}" font-size="11" text-anchor="end">${MAILS}</text><text x="${pad - 6}" y="${y(0)}" font-size="11" ` +
        `text-anchor="end">0</text>`,
      line(box, 'accepted', '#c0392b', '6 4'),
      line(box, 'delivered', '#c0392b', ''),
      line(pf, 'accepted', '#2471a3', '6 4'),
      line(pf, 'delivered', '#2471a3', ''),
      `<text x="${W - pad - 260}" y="${y(MAILS) + 30}" font-size="12"><tspan fill="#c0392b">box</tspan> / <tspan fill="#2471a3">Postfix</tspan>: ` +
        `dashed accepted, solid delivered</text>`,
    ].join('\n')
  })
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H * variants.length}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="#fff"/>\n${panels.join('\n')}\n</svg>\n`
}
