import { spawnSync } from 'node:child_process'
import { createHash, type Hash } from 'node:crypto'
import t from 'tap'
import { RelaxedBody, relaxedBody, relaxedHeader, SIGNED_HEADERS } from '../../../firmware/signing/dkim.ts'
import { parseConfig } from '../../../firmware/config/load.ts'
import { probeFor } from '../../../firmware/keys/service.ts'
import { TEST_TOKEN } from '../../helpers/hsm.ts'
import { mailauthDkimVerify, opensslVerify, pythonDkimVerify, signingSetup } from '../../helpers/signing.ts'
import { FIXTURES } from '../../fixtures/messages.ts'

t.test('M4: DKIM made in the HSM passes python3-dkim and mailauth for every fixture; a changed header fails both', async (t) => {
  const s = await signingSetup(t)
  const record = await s.dkimRecord()
  for (const [name, msg] of Object.entries(FIXTURES)) {
    const signed = await s.sign(msg)
    t.match(signed.toString('latin1'), /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=bank\.example; s=sg1;/, `${name}: DKIM-Signature first`)
    t.notMatch(signed.toString('latin1').split('\r\n\r\n')[0], /; l=/, 'no body length limit')
    t.equal(await pythonDkimVerify(signed, record), true, `${name}: python3-dkim passes`)
    t.same(await mailauthDkimVerify(signed, record), ['pass'], `${name}: mailauth passes`)

    const tampered = Buffer.from(signed.toString('latin1').replace('Subject: ', 'Subject: Re: '), 'latin1')
    t.equal(await pythonDkimVerify(tampered, record), false, `${name}: python3-dkim fails on a changed Subject`)
    t.same(await mailauthDkimVerify(tampered, record), ['fail'], `${name}: mailauth fails on a changed Subject`)
  }
})

t.test('From is over-signed: a second From header added later breaks the signature', async (t) => {
  const s = await signingSetup(t)
  const record = await s.dkimRecord()
  const signed = await s.sign(FIXTURES['plain text']!)
  t.match(signed.toString('latin1').replace(/\r\n[ \t]+/g, ''), /h=from:to:subject:date:message-id:mime-version:content-type:from:to:subject:date;/)
  const end = signed.indexOf('\r\n\r\n')
  const added = Buffer.concat([signed.subarray(0, end + 2), Buffer.from('From: attacker@evil.example\r\n'), signed.subarray(end + 2)])
  t.equal(await pythonDkimVerify(added, record), false)
  t.same(await mailauthDkimVerify(added, record), ['fail'])
})

t.test('relaxed canonicalisation (RFC 6376 §3.4.2, §3.4.4 examples)', async (t) => {
  t.equal(relaxedHeader('SubJect :  AbC \t def  \r\n'), 'subject:AbC def')
  t.equal(relaxedHeader('X-Long: first\r\n  second\r\n'), 'x-long:first second')
  t.equal(relaxedBody(Buffer.from(' C \r\nD \t E\r\n\r\n\r\n')).toString(), ' C\r\nD E\r\n')
  t.equal(relaxedBody(Buffer.from('\r\n\r\n')).toString(), '', 'empty body')
  t.equal(relaxedBody(Buffer.from('no newline')).toString(), 'no newline\r\n')
  t.ok(SIGNED_HEADERS.includes('from'))
})

t.test('RFC 8463: an additional ed25519-sha256 signature made in the token passes python3-dkim and mailauth', async (t) => {
  const { dkimKeyLabel } = await import('../../../firmware/keys/labels.ts')
  const { dkimTxtValue } = await import('../../../firmware/signing/dkim.ts')
  const s = await signingSetup(t, {
    signing: { domains: [{ domain: 'bank.example', smimeKey: 'smime/bank', dkimSelector: 'sg1', dkimEd25519Selector: 'ed1' }] },
  })
  const keys = (await s.hsm.keys.list()).filter((k) => k.label === dkimKeyLabel('bank.example', 'ed1'))
  if (TEST_TOKEN === 'softokn') {
    // #38: bookworm's NSS 3.87 lists no CKM_EDDSA. No Ed25519 key is made, and the probe the box runs at start
    // refuses this configuration by the selector's key, before any statement.
    t.same(keys, [], 'no Ed25519 key in a token without EdDSA')
    const domains = [{ domain: 'bank.example', smimeKey: 'smime/bank', dkimSelector: 'sg1', dkimEd25519Selector: 'ed1' }]
    await t.rejects(probeFor(s.hsm, parseConfig({ dataDir: s.dir, signing: { domains } })), {
      key: 'signing.domains[0].dkimEd25519Selector',
      message: /CKM_EDDSA/,
    })
    return
  }
  t.match(
    keys.find((k) => k.kind === 'private'),
    { keyType: 'ed25519', sensitive: true, extractable: false },
  )
  const ed = dkimTxtValue(await s.hsm.keys.publicKey(dkimKeyLabel('bank.example', 'ed1')))
  t.match(ed, /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/, 'the record carries the bare 32-byte key')
  const records = { sg1: await s.dkimRecord(), ed1: ed }
  const signed = await s.sign(FIXTURES['plain text']!)
  t.match(signed.toString('latin1'), /^DKIM-Signature: v=1; a=ed25519-sha256; [^]*\r\nDKIM-Signature: v=1; a=rsa-sha256;/, 'Ed25519 on top of RSA')
  t.equal(await pythonDkimVerify(signed, records, 0), true, 'python3-dkim: ed25519-sha256 passes')
  t.equal(await pythonDkimVerify(signed, records, 1), true, 'python3-dkim: rsa-sha256 passes')
  t.same(await mailauthDkimVerify(signed, records), ['pass', 'pass'], 'mailauth: both pass')
  const tampered = Buffer.from(signed.toString('latin1').replace('Subject: ', 'Subject: X'), 'latin1')
  t.equal(await pythonDkimVerify(tampered, records, 0), false)
  t.same(await mailauthDkimVerify(tampered, records), ['fail', 'fail'])
})

/** Random bodies heavy in what relaxed canonicalisation touches: runs of SP and HTAB, line ends, empty lines. */
function randomBody(rand: () => number, crlfOnly: boolean): Buffer {
  const alphabet = crlfOnly ? ['a', 'b', ' ', '  ', '\t', '\r\n', '\r\n\r\n', ' \r\n'] : ['a', ' ', '\t', '\r\n', '\r', '\n', ' \r\n', '\r\n\r\n']
  const out: string[] = []
  const n = Math.floor(rand() * 40)
  for (let i = 0; i < n; i++) out.push(alphabet[Math.floor(rand() * alphabet.length)]!)
  if (crlfOnly && n > 0) out.push('\r\n')
  return Buffer.from(out.join(''), 'latin1')
}

function seeded(seed: number): () => number {
  return () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed / 2 ** 31)
}

t.test('#35 3.1: the relaxed body taken piece by piece, cut anywhere, is the relaxed body of the whole; both agree with python3-dkim', async (t) => {
  const rand = seeded(35)
  let cuts = 0
  for (let k = 0; k < 2000; k++) {
    const body = randomBody(rand, k % 2 === 0)
    const whole = relaxedBody(body)
    const points = [...new Set(Array.from({ length: Math.floor(rand() * 6) }, () => Math.floor(rand() * (body.length + 1))))].sort((a, b) => a - b)
    const out: Buffer[] = []
    const r = new RelaxedBody((p) => out.push(Buffer.from(p)))
    let at = 0
    for (const p of [...points, body.length]) {
      r.update(body.subarray(at, p))
      at = p
    }
    r.end()
    cuts += points.length
    if (!Buffer.concat(out).equals(whole)) {
      t.fail(`cut at ${points.join(',')}: ${JSON.stringify(body.toString('latin1'))}`)
      return
    }
  }
  t.ok(cuts > 3000, `2,000 bodies, ${cuts} cuts: the same bytes as the whole`)

  // An independent implementation: python3-dkim's Relaxed.canonicalize_body, on bodies with CRLF line ends
  // (the signing stage makes every line end CRLF before signing).
  const bodies = Array.from({ length: 500 }, () => randomBody(rand, true))
  bodies.push(Buffer.from('  \r\n'), Buffer.from('  \r\n\r\n'), Buffer.from('\r\n  \r\nabc\r\n'), Buffer.from(''))
  const py = spawnSync(
    '/usr/bin/python3',
    [
      '-c',
      'import sys,json,base64\nfrom dkim.canonicalization import Relaxed\n' +
        'print(json.dumps([base64.b64encode(Relaxed.canonicalize_body(base64.b64decode(b))).decode() for b in json.load(sys.stdin)]))',
    ],
    { input: JSON.stringify(bodies.map((b) => b.toString('base64'))), encoding: 'utf8' },
  )
  t.equal(py.status, 0, py.stderr)
  const theirs = JSON.parse(py.stdout) as string[]
  const differ = bodies.filter((b, i) => relaxedBody(b).toString('base64') !== theirs[i])
  t.same(
    differ.map((b) => b.toString('latin1')),
    [],
    'python3-dkim canonicalises all 504 the same (among them a first line of whitespace only, which is an empty line)',
  )
})

/** A SHA-256 factory that records, for each hash made, the bytes it was fed and what else happened meanwhile. */
function countingHashes(): { hash: () => Hash; made: { fed: number; updates: number; fedBeforeOthersDigest: number[] }[] } {
  const made: { fed: number; updates: number; fedBeforeOthersDigest: number[] }[] = []
  const hash = (): Hash => {
    const h = createHash('sha256')
    const entry = { fed: 0, updates: 0, fedBeforeOthersDigest: [] as number[] }
    made.push(entry)
    const update = h.update.bind(h)
    const digest = h.digest.bind(h)
    h.update = ((data: Buffer) => ((entry.fed += data.length), entry.updates++, update(data), h)) as Hash['update']
    h.digest = ((enc?: 'base64') => {
      // When this hash is finished: how much every other hash has been fed so far.
      for (const other of made) if (other !== entry) other.fedBeforeOthersDigest.push(other.fed)
      return enc ? digest(enc) : digest()
    }) as Hash['digest']
    return h
  }
  return { hash, made }
}

t.test('#35 3.1: the CMS digest and the DKIM body hash come from one pass over the entity; one body hash serves both DKIM signatures', async (t) => {
  const ed25519 = TEST_TOKEN !== 'softokn' // bookworm's softokn has no CKM_EDDSA
  const { hash, made } = countingHashes()
  const s = await signingSetup(t, {
    hash,
    signing: { domains: [{ domain: 'bank.example', smimeKey: 'smime/bank', dkimSelector: 'sg1', ...(ed25519 ? { dkimEd25519Selector: 'ed1' } : {}) }] },
  })
  const { dkimKeyLabel } = await import('../../../firmware/keys/labels.ts')
  const { dkimTxtValue } = await import('../../../firmware/signing/dkim.ts')
  const records: Record<string, string> = { sg1: await s.dkimRecord() }
  if (ed25519) records.ed1 = dkimTxtValue(await s.hsm.keys.publicKey(dkimKeyLabel('bank.example', 'ed1')))
  // A statement of about 60 KB, its lines with the whitespace runs relaxed canonicalisation changes.
  const line = 'Trade 2026-11-02  TSMC   2330\t  1,000 sh  NT$ 1,045,000  \r\n'
  const statement = Buffer.from(FIXTURES['plain text']!.toString('latin1').replace('your statement is ready.\r\n', line.repeat(1000)), 'latin1')
  made.length = 0
  const signed = await s.sign(statement)

  const large = made.filter((m) => m.fed > 10_000)
  t.equal(large.length, 2, `two hashes over the message's bytes, not one per signature (fed ${made.map((m) => m.fed).join(', ')} bytes)`)
  const body = large[1]
  // The body hash is made with the CMS digest and fed the entity piece by piece with it: when the CMS
  // digest is finished, the body hash already holds all but the signature part (a second pass would find it empty).
  const before = body!.fedBeforeOthersDigest[0]!
  t.ok(before > body!.fed - 8000 && before < body!.fed, `the DKIM body hash held ${before} of its ${body!.fed} bytes when the CMS digest was taken`)
  t.ok((await opensslVerify(s.dir, s.ca.cert, signed, 'cms')).ok, 'openssl cms -verify')
  const count = ed25519 ? 2 : 1
  for (let i = 0; i < count; i++) t.equal(await pythonDkimVerify(signed, records, i), true, `python3-dkim: signature ${i} passes`)
  t.same(await mailauthDkimVerify(signed, records), Array(count).fill('pass'), 'mailauth: all pass')
})
