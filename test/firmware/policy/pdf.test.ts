import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { pdfEncryption } from '../../../firmware/policy/pdf.ts'
import { tempDir } from '../../helpers/box.ts'
import { pagePdfs, pdfFixtures, qpdfEncryption } from '../../helpers/pdf.ts'

/** Replaces the newest trailer dictionary's opening "<<" with "<< " + text (the trailer follows the xref, so no offset moves). */
function inTrailer(pdf: Buffer, text: string): Buffer {
  const s = pdf.toString('latin1')
  const at = s.lastIndexOf('trailer')
  const open = s.indexOf('<<', at) + 2
  return Buffer.from(`${s.slice(0, open)} ${text} ${s.slice(open)}`, 'latin1')
}

/** Deterministic pseudo-random numbers for the mutations (the same cases on every run). */
function rng(seed: number): () => number {
  let x = seed >>> 0
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) / 2 ** 32
  }
}

t.test('#14 finding 1: "/Encrypt" text without a real encryption dictionary is not encryption', async (t) => {
  const plain = (await pagePdfs(tempDir(t)))['plain-page']!
  const tricks: Record<string, Buffer> = {
    'in a comment': inTrailer(plain, '% /Encrypt 9 0 R\n'),
    'as null': inTrailer(plain, '/Encrypt null'),
    'inside another dictionary': inTrailer(plain, '/X << /Encrypt 9 0 R >>'),
    'inside a string': inTrailer(plain, '/Title (/Encrypt 9 0 R)'),
    'pointing at an object that does not exist': inTrailer(plain, '/Encrypt 99 0 R'),
    'in a comment after %%EOF': Buffer.concat([plain, Buffer.from('% /Encrypt 9 0 R\n')]),
  }
  const dir = tempDir(t)
  for (const [name, pdf] of Object.entries(tricks)) {
    const file = join(dir, `${name.replace(/\W+/g, '-')}.pdf`)
    writeFileSync(file, pdf)
    t.equal(await qpdfEncryption(file), 'unencrypted', `qpdf: ${name} → not encrypted`)
    t.not(pdfEncryption(pdf).verdict, 'encrypted', `box: ${name} → not encrypted (${pdfEncryption(pdf).reason})`)
  }
  t.match(
    pdfEncryption(inTrailer(plain, '/Encrypt 1 0 R')),
    { verdict: 'unreadable', reason: /names no security handler/ },
    'an /Encrypt at an object that is no encryption dictionary cannot be judged: refused, not accepted',
  )
})

t.test('M13 differential with qpdf: every PDF qpdf makes, every trick, and mutations; the box never says encrypted where qpdf says not', async (t) => {
  const dir = tempDir(t)
  const bases = { ...(await pdfFixtures(dir)), ...(await pagePdfs(dir)) }
  const cases: { name: string; pdf: Buffer }[] = Object.entries(bases).map(([name, pdf]) => ({ name, pdf }))
  const random = rng(1414)
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!
  const names = Object.keys(bases)
  const mutations: [string, (pdf: Buffer) => Buffer][] = [
    ['truncated', (p) => p.subarray(0, 10 + Math.floor(random() * (p.length - 10)))],
    ['comment inserted', (p) => insert(p, '\n% /Encrypt 1 0 R >> trailer << /Encrypt 1 0 R >>\n')],
    ['string inserted', (p) => insert(p, ' (/Encrypt 9 0 R) ')],
    ['dictionary inserted', (p) => insert(p, ' << /Encrypt 9 0 R /Filter /Standard /V 2 /R 3 >> ')],
    ['startxref moved', (p) => moveStartxref(p, Math.floor(random() * 100) - 50)],
    ['byte flipped near the end', (p) => flip(p, p.length - 1 - Math.floor(random() * Math.min(600, p.length)))],
    ['/Encrypt renamed', (p) => Buffer.from(p.toString('latin1').replace('/Encrypt', '/Encrypz'), 'latin1')],
    ['tail cut', (p) => Buffer.concat([p.subarray(0, p.length - 400), p.subarray(p.length - 400 + 1 + Math.floor(random() * 300))])],
    ['duplicate /Encrypt in the trailer', (p) => inTrailer(p, '/Encrypt null')],
    // Changes that keep the structure sound, so that encrypted files stay encrypted:
    ['comment after %%EOF', (p) => Buffer.concat([p, Buffer.from(`% ${'x'.repeat(Math.floor(random() * 200))} /Encrypt 9 0 R\n`)])],
    ['comment in the trailer', (p) => (p.includes('trailer') ? inTrailer(p, '% a remark\n') : p)],
    ['whitespace after %%EOF', (p) => Buffer.concat([p, Buffer.from('\r\n\r\n')])],
  ]
  const insert = (p: Buffer, text: string) => {
    const at = Math.floor(random() * p.length)
    return Buffer.concat([p.subarray(0, at), Buffer.from(text, 'latin1'), p.subarray(at)])
  }
  for (let i = 0; i < 320; i++) {
    const base = pick(names)
    const [how, mutate] = pick(mutations)
    cases.push({ name: `${base} / ${how} #${i}`, pdf: mutate(bases[base]!) })
  }
  let boxEncrypted = 0
  const disagreements: string[] = []
  const tally: Record<string, number> = {}
  for (const [i, c] of cases.entries()) {
    const file = join(dir, `case-${i}.pdf`)
    writeFileSync(file, c.pdf)
    const box = pdfEncryption(c.pdf).verdict
    const qpdf = await qpdfEncryption(file)
    tally[`box ${box} / qpdf ${qpdf}`] = (tally[`box ${box} / qpdf ${qpdf}`] ?? 0) + 1
    if (box === 'encrypted') boxEncrypted++
    if (box === 'encrypted' && qpdf === 'unencrypted') disagreements.push(c.name)
  }
  t.comment(
    `PDF differential: ${cases.length} PDFs (${Object.keys(bases).length} made by qpdf, ${cases.length - Object.keys(bases).length} mutations); ${JSON.stringify(tally)}`,
  )
  t.same(disagreements, [], 'the box never says "encrypted" where qpdf says "not encrypted"')
  t.ok(boxEncrypted > 40, `${boxEncrypted} cases were judged encrypted: the differential is not only about refusals`)
  for (const [name, pdf] of Object.entries(bases)) {
    t.equal(
      pdfEncryption(pdf).verdict,
      /^(plain|plain-)/.test(name) ? 'unencrypted' : 'encrypted',
      `${name}: a statement the firm's tools make is judged right`,
    )
  }
})

function moveStartxref(p: Buffer, by: number): Buffer {
  const s = p.toString('latin1')
  const at = s.lastIndexOf('startxref')
  return Buffer.from(s.slice(0, at) + s.slice(at).replace(/startxref\s+(\d+)/, (_, n: string) => `startxref\n${Math.max(0, Number(n) + by)}`), 'latin1')
}

function flip(p: Buffer, at: number): Buffer {
  const c = Buffer.from(p)
  c[at] = c[at]! ^ 0x20
  return c
}
