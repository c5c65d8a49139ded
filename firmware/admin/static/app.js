// The admin page's only script (CSP script-src 'self'): draws the dashboard's charts with uPlot,
// served from the box, from /api/series, and redraws them every 10 seconds.
'use strict'

const charts = new Map()

function seriesOf(data, metric) {
  const t = data.points.map((p) => p.t / 1000)
  if (metric === 'bits') {
    // Mbit/s: the egress rate and the cap it must stay under (M3).
    return {
      title: 'Egress 對外頻寬 (Mbit/s)',
      data: [t, data.points.map((p) => p.bitsOut / 1e6), data.points.map(() => data.capBitsPerSecond / 1e6)],
      series: [{}, { label: 'egress', stroke: '#1565c0', width: 2, points: { show: true } }, { label: 'cap 上限', stroke: '#c62828', dash: [6, 4] }],
    }
  }
  return {
    title: 'Mails per second 每秒郵件數',
    data: [t, ...['submissions', 'deliveries', 'deferrals', 'bounces'].map((k) => data.points.map((p) => p[k]))],
    series: [
      {},
      { label: 'submissions 收件', stroke: '#2e7d32', points: { show: true } },
      { label: 'deliveries 投遞', stroke: '#1565c0', points: { show: true } },
      { label: 'deferrals 延遲', stroke: '#ef6c00', points: { show: true } },
      { label: 'bounces 退信', stroke: '#c62828', points: { show: true } },
    ],
  }
}

async function draw(el) {
  const res = await fetch(el.dataset.series, { credentials: 'same-origin' })
  if (!res.ok) return
  const { title, data, series } = seriesOf(await res.json(), el.dataset.metric)
  el.dataset.points = String(data[0].length)
  // The whole span on the time axis, whatever part of it has points yet.
  const now = Date.now() / 1000
  const span = Number(el.dataset.span || 3600)
  const old = charts.get(el)
  if (old) {
    old.setData(data, false)
    old.setScale('x', { min: now - span, max: now })
    return
  }
  const opts = {
    title,
    width: Math.max(320, el.clientWidth - 16),
    height: 220,
    series,
    scales: { x: { time: true, range: () => [now - span, now] }, y: { range: (u, min, max) => [0, Math.max(1e-6, max) * 1.1] } },
    axes: [{}, { size: 60 }],
  }
  charts.set(el, new uPlot(opts, data, el))
}

function drawAll() {
  for (const el of document.querySelectorAll('.chart[data-series]')) draw(el).catch(() => {})
}

if (document.querySelector('.chart[data-series]')) {
  drawAll()
  setInterval(drawAll, 10000)
}

// Firmware upload (/system/update): the bundle goes as one stream, with the form's CSRF token in a
// header; the page the box answers with (checked and staged, or refused with the reason) replaces this one.
for (const form of document.querySelectorAll('form[data-upload]')) {
  form.addEventListener('submit', async (e) => {
    e.preventDefault()
    const file = form.querySelector('input[type=file]').files[0]
    if (!file) return
    form.querySelector('button').disabled = true
    form.querySelector('button').textContent = 'Uploading and checking… 上傳檢查中'
    const res = await fetch(form.dataset.upload, {
      method: 'POST',
      body: file,
      credentials: 'same-origin',
      headers: { 'content-type': 'application/octet-stream', 'x-csrf-token': form.dataset.csrf },
    })
    document.documentElement.innerHTML = await res.text()
  })
}
