import t from 'tap'
import { BOX_KEYS } from '../../../firmware/keys/manifest.ts'
import { TrackingTokens } from '../../../firmware/ledger/tokens.ts'
import { devHsm } from '../../helpers/hsm.ts'

t.test('M9: a token opens to what it was sealed with; altered, cut or made elsewhere it does not; nothing in it is readable', async (t) => {
  const { hsm } = await devHsm(t)
  await hsm.ensureKeys(BOX_KEYS)
  const tokens = new TrackingTokens(hsm)
  const url = 'https://bank.example/statements/2026-11?account=A123456789'
  const click = await tokens.seal({ kind: 'click', id: '01KQ7ZC3Y4', recipient: 0, link: 2, url })
  const open = await tokens.seal({ kind: 'open', id: '01KQ7ZC3Y4', recipient: 0 })
  t.same(await tokens.open(click), { kind: 'click', id: '01KQ7ZC3Y4', recipient: 0, link: 2, url })
  t.same(await tokens.open(open), { kind: 'open', id: '01KQ7ZC3Y4', recipient: 0 })
  t.not(await tokens.seal({ kind: 'open', id: '01KQ7ZC3Y4', recipient: 0 }), open, 'a fresh IV each time: tokens cannot be linked by their bytes')

  const raw = Buffer.from(click, 'base64url')
  for (const needle of ['01KQ7ZC3Y4', 'bank.example', 'A123456789'])
    t.notOk(raw.includes(needle) || click.includes(needle), `"${needle}" is nowhere in the token, raw or encoded`)

  // Every single bit flipped: each is forged (or not a token at all), none opens.
  let opened = 0
  for (let i = 0; i < raw.length * 8; i++) {
    const b = Buffer.from(raw)
    b[i >> 3]! ^= 1 << (i & 7)
    if (typeof (await tokens.open(b.toString('base64url'))) === 'object') opened++
  }
  t.equal(opened, 0, `${raw.length * 8} one-bit changes, none accepted`)
  t.equal(await tokens.open(click.slice(0, -4)), 'forged', 'cut short')
  t.equal(await tokens.open('https%3A%2F%2Fevil.example%2F'), 'malformed', 'a URL is not a token')
  t.equal(await tokens.open('A'.repeat(5000)), 'malformed', 'nor is something long')

  // A tag made without the key (as another box, with other HSM keys, would make it).
  const forged = Buffer.from(raw)
  forged.fill(0x41, raw.length - 16)
  t.equal(await tokens.open(forged.toString('base64url')), 'forged', 'a tag made without the key')
})
