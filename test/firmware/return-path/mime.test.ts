import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { readParts } from '../../../firmware/return-path/mime.ts'
import { pythonEach } from '../../helpers/python.ts'

/**
 * The lenient part reader against an independent one: Python's email package
 * (compat32, the policy that reads broken mail as mail servers do) over the
 * real bounces of ../shared/corpus/bounces. Both must find the same leaf parts,
 * in the same order, with the same types; an embedded message counts as one
 * part (the report parser reads its headers as text), and a multipart that
 * never uses its boundary is one text part.
 */
const REPO = fileURLToPath(new URL('../../../', import.meta.url))
const CORPUS = [process.env.SG_BOUNCE_CORPUS, `${REPO}../shared/corpus/bounces`, '/work/shared/corpus/bounces'].find(
  (d) => d && existsSync(`${d}/expected.json`),
)

const JUDGE = `
import base64
from email import policy
from email.parser import BytesParser
def leaves(part, out):
    if part.get_content_maintype() == 'message' or not part.is_multipart():
        # a multipart that never uses its boundary: its body is read as text
        out.append('text/plain' if part.get_content_maintype() == 'multipart' else part.get_content_type())
        return
    payload = part.get_payload()
    if isinstance(payload, list):
        for p in payload:
            leaves(p, out)

def judge(x):
    msg = BytesParser(policy=policy.compat32).parsebytes(base64.b64decode(x))
    out = []
    leaves(msg, out)
    return out
`

t.test('the part reader finds the parts Python email finds, in every real bounce', async (t) => {
  t.ok(CORPUS, 'the bounce corpus is found')
  if (!CORPUS) return
  const files = readdirSync(CORPUS).filter((f) => f.endsWith('.eml'))
  const raws = files.map((f) => readFileSync(`${CORPUS}/${f}`))
  const theirs = pythonEach<string, string[]>(
    JUDGE,
    raws.map((r) => r.toString('base64')),
  )
  const differ: string[] = []
  for (const [i, raw] of raws.entries()) {
    const ours = (await readParts(raw)).parts.map((p) => p.type)
    if (JSON.stringify(ours) !== JSON.stringify(theirs[i])) differ.push(`${files[i]}: ours ${ours.join(',')} / python ${theirs[i]!.join(',')}`)
  }
  t.same(differ, [], `${files.length - differ.length} of ${files.length} read alike`)
})

t.test('what is kept of a part: decoded, in its charset, cut at the limit; a PDF is not read', async (t) => {
  const raw = Buffer.from(
    [
      'Content-Type: multipart/mixed; boundary="X"',
      '',
      '--X',
      'Content-Type: text/plain; charset=big5',
      'Content-Transfer-Encoding: base64',
      '',
      Buffer.from([0xb1, 0x62, 0xb3, 0xe6]).toString('base64'),
      '--X',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      'caf=C3=A9 =',
      'ok',
      '--X',
      'Content-Type: application/pdf',
      '',
      '%PDF-1.7',
      '--X--',
      '',
    ].join('\r\n'),
  )
  const { parts } = await readParts(raw)
  t.same(
    parts.map((p) => [p.type, p.text.trim()]),
    [
      ['text/plain', '帳單'],
      ['text/plain', 'café ok'],
      ['application/pdf', ''],
    ],
  )
})
