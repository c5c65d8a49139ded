import { readFileSync } from 'node:fs'
import { request } from 'node:https'
import { join } from 'node:path'
import { hotp, stepAt } from '../../firmware/admin/totp.ts'
import { unbase32 } from '../../hal/crypto/base32.ts'
import { spawnDaemon, writeDaemonConfig, type Child } from './daemon.ts'

type T = { teardown(fn: () => unknown): void }

export interface Res {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/**
 * A client of the admin page over real HTTPS, verifying the box's certificate
 * (its CA is the self-signed certificate in `<dataDir>/tls/`), with a cookie
 * jar: a browser without the browser, for the checks made on requests.
 */
export class AdminClient {
  readonly base: URL
  readonly #ca: string
  readonly cookies = new Map<string, string>()

  constructor(url: string, ca: string) {
    this.base = new URL(url)
    this.#ca = ca
  }

  get(path: string, headers: Record<string, string> = {}): Promise<Res> {
    return this.#send('GET', path, undefined, headers)
  }

  /** A form POST; `_csrf` is taken from the last page when not given (`csrf: false` sends none). */
  post(path: string, form: Record<string, string>, o: { csrf?: string | false } = {}): Promise<Res> {
    const fields = { ...form }
    if (o.csrf !== false) fields._csrf = o.csrf ?? this.lastCsrf ?? ''
    return this.#send('POST', path, new URLSearchParams(fields).toString(), { 'content-type': 'application/x-www-form-urlencoded' })
  }

  /** A POST of raw bytes (an upload), with extra headers (e.g. the CSRF token), as the page's script sends it. */
  postBytes(path: string, bytes: Buffer, headers: Record<string, string> = {}): Promise<Res> {
    return this.#send('POST', path, bytes, { ...headers, 'content-type': 'application/octet-stream' })
  }

  /** The CSRF token of the last page read. */
  lastCsrf: string | undefined

  /** A GET whose body is kept as bytes (a download). */
  async getBuffer(path: string): Promise<{ status: number; headers: Res['headers']; body: Buffer }> {
    return this.#send('GET', path, undefined, {}, true) as unknown as Promise<{ status: number; headers: Res['headers']; body: Buffer }>
  }

  #send(method: string, path: string, body: string | Buffer | undefined, headers: Record<string, string>, binary = false): Promise<Res> {
    const cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
    return new Promise((resolve, reject) => {
      const req = request(
        new URL(path, this.base),
        { method, ca: this.#ca, headers: { ...headers, ...(cookie ? { cookie } : {}), ...(body ? { 'content-length': Buffer.byteLength(body) } : {}) } },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (d: Buffer) => chunks.push(d))
          res.on('end', () => {
            const bytes = Buffer.concat(chunks)
            const text = bytes.toString('utf8')
            for (const c of res.headers['set-cookie'] ?? []) {
              const [pair] = c.split(';')
              const eq = pair!.indexOf('=')
              const name = pair!.slice(0, eq)
              const value = pair!.slice(eq + 1)
              if (value === '' || /expires=Thu, 01 Jan 1970/i.test(c)) this.cookies.delete(name)
              else this.cookies.set(name, value)
            }
            const m = /name="_csrf" value="([^"]+)"/.exec(text)
            if (m) this.lastCsrf = m[1]
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: binary ? (bytes as unknown as string) : text })
          })
        },
      )
      req.on('error', reject)
      req.end(body)
    })
  }
}

/** The TOTP secret shown on the enrolment page (its "Key", base32 in groups of four). */
export function enrolSecret(page: string): Buffer {
  const m = /<code class="secret">([A-Z2-7 ]+)<\/code>/.exec(page)
  if (!m) throw new Error('no key on the page')
  return unbase32(m[1]!.replace(/ /g, '').toLowerCase())!
}

export interface AdminBox {
  child: Child
  dataDir: string
  configPath: string
  url: string
  ca: string
  submissionPort: number
  client(): AdminClient
  /** A TOTP code for `secret` that the box has not taken yet. */
  code(secret: Buffer): Promise<string>
}

/**
 * TOTP codes the box has not taken yet: it takes each 30-second step's code once,
 * and the next step's early; a test that needs more than that waits for the clock.
 */
export function freshCodes(): (secret: Buffer) => Promise<string> {
  const used = new Map<string, number>()
  return async (secret) => {
    const key = secret.toString('hex')
    for (;;) {
      const now = stepAt(Date.now())
      const step = Math.max(now, (used.get(key) ?? -1) + 1)
      if (step <= now + 1) {
        used.set(key, step)
        return hotp(secret, step)
      }
      await new Promise((r) => setTimeout(r, 1000))
    }
  }
}

/** A real daemon with its admin page on a free port. */
export async function adminBox(
  t: T,
  extra: Record<string, unknown> = {},
  env?: Record<string, string>,
  /** Runs after the configuration is written and before the daemon starts: to put keys in the token, say. */
  before?: (configPath: string, dataDir: string) => Promise<void>,
): Promise<AdminBox> {
  const { path, dataDir } = await writeDaemonConfig(t, extra)
  await before?.(path, dataDir)
  const child = spawnDaemon(t, ['--config', path], env ? { env } : {})
  const listening = (await child.waitFor((r) => r.msg === 'submission listening', 30_000)) as unknown as { starttls: { port: number } }
  const up = await child.waitFor((r) => r.msg === 'admin page listening', 30_000)
  const url = String(up.url)
  const ca = readFileSync(join(dataDir, 'tls', 'submission.crt'), 'utf8')
  const code = freshCodes()
  return {
    child,
    dataDir,
    configPath: path,
    url,
    ca,
    submissionPort: listening.starttls.port,
    client: () => new AdminClient(url, ca),
    code,
  }
}

/** Runs the setup with the code from the console file: the first administrator, enrolled. Returns its secret and recovery codes. */
export async function setUpFirstAdmin(box: AdminBox, name: string, password: string): Promise<{ secret: Buffer; recovery: string[] }> {
  const c = box.client()
  await c.get('/setup')
  const code = readFileSync(join(box.dataDir, 'admin', 'setup-code'), 'utf8').trim()
  const made = await c.post('/setup', { code, name, password })
  if (made.status !== 303) throw new Error(`setup refused: ${made.status} ${made.body.slice(0, 300)}`)
  const enrol = await c.get('/enrol')
  const secret = enrolSecret(enrol.body)
  const done = await c.post('/enrol', { code: await box.code(secret) })
  const recovery = [...done.body.matchAll(/<li><code>([0-9a-f-]+)<\/code><\/li>/g)].map((m) => m[1]!)
  return { secret, recovery }
}

/**
 * A second administrator, made by `by` (a logged-in administrator) and enrolled: a client logged in with one of
 * its recovery codes (so the next TOTP step stays free for the action under test), and its TOTP secret.
 */
export async function secondAdmin(box: AdminBox, by: AdminClient, who: { name: string; password: string }): Promise<{ client: AdminClient; secret: Buffer }> {
  await by.get('/users')
  await by.post('/users', { name: who.name, role: 'admin', password: who.password })
  const first = box.client()
  await first.get('/login')
  await first.post('/login', { name: who.name, password: who.password, code: '' })
  const secret = enrolSecret((await first.get('/enrol')).body)
  const enrolled = await first.post('/enrol', { code: await box.code(secret) })
  const client = box.client()
  await client.get('/login')
  const r = await client.post('/login', { name: who.name, password: who.password, code: /<li><code>([0-9a-f-]+)<\/code><\/li>/.exec(enrolled.body)![1]! })
  if (r.status !== 303) throw new Error(`login of ${who.name} refused: ${r.status}`)
  return { client, secret }
}

/** A client logged in as `name`. */
export async function loggedIn(box: AdminBox, name: string, password: string, secret: Buffer): Promise<AdminClient> {
  const c = box.client()
  await c.get('/login')
  const r = await c.post('/login', { name, password, code: await box.code(secret) })
  if (r.status !== 303) throw new Error(`login refused: ${r.status} ${r.body.slice(0, 300)}`)
  await c.get('/dashboard')
  return c
}
