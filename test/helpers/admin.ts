import { readFileSync } from 'node:fs'
import { request } from 'node:https'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
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

  readonly #localAddress: string | undefined

  /** `localAddress`: the client's own address (another host on the loopback net, 127.0.0.x). */
  constructor(url: string, ca: string, localAddress?: string) {
    this.base = new URL(url)
    this.#ca = ca
    this.#localAddress = localAddress
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

  /** A form POST of an encoded body as given (a field twice, an odd encoding): what a hand-made request sends. */
  postRaw(path: string, body: string): Promise<Res> {
    return this.#send('POST', path, body, { 'content-type': 'application/x-www-form-urlencoded' })
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

  async #send(method: string, path: string, body: string | Buffer | undefined, headers: Record<string, string>, binary = false): Promise<Res> {
    try {
      return await this.#once(method, path, body, headers, binary)
    } catch (err) {
      // A kept-alive connection the server closed (its keepAliveTimeout) just as this request was
      // written to it: sent again once, on a fresh connection, as a browser does (Node's http docs, `reusedSocket`).
      if (!(err instanceof Error && 'reusedSocket' in err)) throw err
      return this.#once(method, path, body, headers, binary)
    }
  }

  #once(method: string, path: string, body: string | Buffer | undefined, headers: Record<string, string>, binary: boolean): Promise<Res> {
    const cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
    return new Promise((resolve, reject) => {
      const req = request(
        new URL(path, this.base),
        {
          method,
          ca: this.#ca,
          ...(this.#localAddress ? { localAddress: this.#localAddress } : {}),
          headers: { ...headers, ...(cookie ? { cookie } : {}), ...(body ? { 'content-length': Buffer.byteLength(body) } : {}) },
        },
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
      req.on('error', (err: NodeJS.ErrnoException) =>
        reject(req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE') ? Object.assign(err, { reusedSocket: true }) : err),
      )
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
  client(localAddress?: string): AdminClient
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
    client: (localAddress?: string) => new AdminClient(url, ca, localAddress),
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

/** `npm run account -- ARGS` against the box's config (root at the console); its standard output. */
export async function accountTool(configPath: string, ...args: string[]): Promise<string> {
  const { execFile } = await import('node:child_process')
  const tool = fileURLToPath(new URL('../../provisioning/account.ts', import.meta.url))
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [tool, ...args, '--config', configPath], (err, stdout, stderr) =>
      err ? reject(new Error(`${stderr}${stdout}`)) : resolve(stdout),
    ),
  )
}

/** The one-time code a tool or page printed. */
export function oneTimeCodeIn(text: string): string {
  const m = /([A-Z2-9]{5}-[A-Z2-9]{5}-[A-Z2-9]{5}-[A-Z2-9]{5})/.exec(text)
  if (!m) throw new Error(`no one-time code in: ${text.slice(0, 300)}`)
  return m[1]!
}

/**
 * #31: the person with an enrolment code sets their own password at /welcome and enrols their
 * authenticator. Returns its TOTP secret and recovery codes.
 */
export async function welcome(
  box: Pick<AdminBox, 'client' | 'code'>,
  name: string,
  code: string,
  password: string,
): Promise<{ secret: Buffer; recovery: string[] }> {
  const c = box.client()
  await c.get('/welcome')
  const r = await c.post('/welcome', { name, code, password })
  if (r.status !== 303 || r.headers.location !== '/enrol') throw new Error(`welcome refused: ${r.status} ${r.body.slice(0, 300)}`)
  const secret = enrolSecret((await c.get('/enrol')).body)
  const done = await c.post('/enrol', { code: await box.code(secret) })
  const recovery = [...done.body.matchAll(/<li><code>([0-9a-f-]+)<\/code><\/li>/g)].map((m) => m[1]!)
  return { secret, recovery }
}

/** A client logged in with a recovery code (so the next TOTP step stays free for the action under test). */
export async function withRecovery(box: Pick<AdminBox, 'client'>, name: string, password: string, recovery: string): Promise<AdminClient> {
  const client = box.client()
  await client.get('/login')
  const r = await client.post('/login', { name, password, code: recovery })
  if (r.status !== 303) throw new Error(`login of ${name} refused: ${r.status}`)
  return client
}

/**
 * A second administrator, as #31 makes one when only one exists: enrolled at the box's console
 * (`npm run account -- enrol`), the person setting their own password and authenticator. A client
 * logged in with one of its recovery codes, and its TOTP secret.
 */
export async function secondAdmin(box: AdminBox, _by: AdminClient, who: { name: string; password: string }): Promise<{ client: AdminClient; secret: Buffer }> {
  const code = oneTimeCodeIn(await accountTool(box.configPath, 'enrol', who.name, '--role', 'admin'))
  const { secret, recovery } = await welcome(box, who.name, code, who.password)
  return { client: await withRecovery(box, who.name, who.password, recovery[0]!), secret }
}

/**
 * #31: an account proposed by `by` and approved by `approver` (with a code from `approverSecret`),
 * the person then setting their own password and authenticator. Returns its TOTP secret.
 */
export async function approvedAccount(
  box: AdminBox,
  by: AdminClient,
  approver: AdminClient,
  approverSecret: Buffer,
  who: { name: string; password: string },
  role: 'admin' | 'operator' | 'auditor',
): Promise<{ secret: Buffer; recovery: string[] }> {
  await by.get('/users')
  const proposed = await by.post('/users', { name: who.name, role, reason: `a ${role} for the test` })
  if (!/Proposed: it waits for a second administrator/.test(proposed.body)) throw new Error(`not proposed: ${proposed.body.slice(0, 300)}`)
  const page = await approver.get('/users')
  const id = new RegExp(`<td>make the account ${who.name} \\(${role}\\)</td>[\\s\\S]*?/users/proposals/([0-9a-f]{12})/approve`).exec(page.body)?.[1]
  if (!id) throw new Error(`no open proposal for ${who.name}`)
  const approved = await approver.post(`/users/proposals/${id}/approve`, { code: await box.code(approverSecret) })
  return welcome(box, who.name, oneTimeCodeIn(approved.body), who.password)
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
