// The admin page's only script (CSP script-src 'self'): draws the dashboard's charts with uPlot,
// served from the box, from /api/series, and redraws them every 10 seconds.
'use strict'

const charts = new Map()

function seriesOf(data, metric) {
  const t = data.points.map((p) => p.t / 1000)
  if (metric === 'bits') {
    return {
      data: [t, data.points.map((p) => p.bitsOut), data.points.map(() => data.capBitsPerSecond)],
      series: [{}, { label: 'egress bits/s', stroke: '#1565c0', width: 2 }, { label: 'cap', stroke: '#c62828', dash: [6, 4] }],
    }
  }
  return {
    data: [t, ...['submissions', 'deliveries', 'deferrals', 'bounces'].map((k) => data.points.map((p) => p[k]))],
    series: [
      {},
      { label: 'submissions/s', stroke: '#2e7d32' },
      { label: 'deliveries/s', stroke: '#1565c0' },
      { label: 'deferrals/s', stroke: '#ef6c00' },
      { label: 'bounces/s', stroke: '#c62828' },
    ],
  }
}

async function draw(el) {
  const res = await fetch(el.dataset.series, { credentials: 'same-origin' })
  if (!res.ok) return
  const { data, series } = seriesOf(await res.json(), el.dataset.metric)
  el.dataset.points = String(data[0].length)
  const old = charts.get(el)
  if (old) return old.setData(data)
  const chart = new uPlot({ width: Math.max(320, el.clientWidth), height: 220, series }, data, el)
  charts.set(el, chart)
}

function drawAll() {
  for (const el of document.querySelectorAll('.chart[data-series]')) draw(el).catch(() => {})
}

if (document.querySelector('.chart[data-series]')) {
  drawAll()
  setInterval(drawAll, 10000)
}
