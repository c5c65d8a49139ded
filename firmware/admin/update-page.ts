import { createHash, randomBytes } from 'node:crypto'
import { closeSync, createWriteStream, existsSync, fstatSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { writeFileAtomic } from '../../hal/storage/files.ts'
import { BundleError, compareVersions, extractBundle, openBundle, trustedKeys } from '../update/bundle.ts'
import { APPROVED_UPDATE, STAGED_UPDATE, updatesDir, type StagedUpdate } from '../update/staged.ts'
import { html } from './html.ts'
import { approvalWindow, formBody, layout, table, type Viewer, when } from './pages.ts'
import type { Routes } from './types.ts'

/**
 * A firmware update from the admin page (ETSI 5.3, S5): one administrator
 * uploads a bundle, which the box checks at once (signature, manifest, every
 * file's hash) and stages; a second administrator approves it with TOTP. The
 * approved bundle is installed by the service manager before the box's next
 * start (`image/cli.ts boot`, the unit's ExecStartPre, as root: the box may
 * not write its own firmware), on trial, and the daemon commits it when it runs
 * healthy. Every step is a `firmware.update` record; a refusal shows its reason.
 */
const MAX_BYTES = 2 * 1024 ** 3

export function registerUpdateRoutes(r: Routes): void {
  registerUpdateUpload(r)
  registerUpdateDecision(r)
}

/** What the routes below share: dir, stagedPath, staged, event, page. */
function updateHelpers(r: Routes) {
  const { deps: d } = r
  const dir = updatesDir(d.config.dataDir)
  const stagedPath = join(dir, STAGED_UPDATE)
  const staged = (): StagedUpdate | undefined => (existsSync(stagedPath) ? (JSON.parse(readFileSync(stagedPath, 'utf8')) as StagedUpdate) : undefined)
  const event = (step: string, version: string, outcome: 'ok' | 'failed', detail: string) =>
    d.events.emit({ type: 'firmware.update', step, version, outcome, detail })

  const page = (v: Viewer, notice?: { kind: 'ok' | 'error'; text: string }) => {
    const f = d.firmware()
    const s = staged()
    const hidden = html`<input type="hidden" name="_csrf" value="${v.csrf}" />`
    return layout(
      'Firmware update 韌體更新',
      html`${table(
        ['', ''],
        [
          ['Running 執行中', `${f.running}${f.slot ? ` (slot ${f.slot})` : ''}${f.trial ? ' — on trial 試用中' : ''}`],
          ['Other slot 另一槽', f.other ?? '—'],
          ['Minimum security version 最低安全版本', f.minSecurityVersion ?? '—'],
          [
            'Last update 最近更新',
            f.lastUpdate ? `${f.lastUpdate.version}: ${f.lastUpdate.outcome} — ${f.lastUpdate.reason} (${f.lastUpdate.at.slice(0, 16)})` : '—',
          ],
        ],
      )}
      ${
        !f.slot
          ? html`<p class="hint">This box runs from a checkout, not an installed image: updates come with git. 此環境非映像安裝。</p>`
          : s
            ? html`<h2>Waiting for approval 待核准</h2>
                <p>
                  ${s.version} (security ${s.securityVersion}), ${s.files} files, signed by key ${s.signedBy.slice(0, 16)}, SHA-256
                  <code>${s.sha256.slice(0, 16)}…</code>, uploaded by <strong>${s.uploadedBy}</strong> at ${when(s.at)}. Checked: signature, manifest, every
                  file.
                </p>
                ${
                  s.downgrade
                    ? html`<p class="notice error">
                        A downgrade: ${s.version} is not newer than the running ${f.running}. Approving it installs it all the same. 此為降版安裝。
                      </p>`
                    : ''
                }
                ${
                  s.uploadedBy === v.user
                    ? html`<p>A second administrator approves it. 需另一位管理員核准。</p>`
                    : html`<form method="post" action="/system/update/approve" class="row">
                        ${hidden}${
                          s.downgrade ? html`<label><input type="checkbox" name="downgrade" value="yes" required /> approve the downgrade 核准降版</label>` : ''
                        }<input name="code" inputmode="numeric" autocomplete="one-time-code" placeholder="authenticator code 驗證碼" required /><button>
                          Approve and install 核准並安裝
                        </button>
                      </form>`
                }
                <form method="post" action="/system/update/withdraw" class="inline">${hidden}<button>Withdraw 撤回</button></form>`
            : html`<h2>Upload 上傳</h2>
                <form class="row" data-upload="/system/update/upload" data-csrf="${v.csrf}">
                  <input type="file" name="bundle" accept=".sgfw" required /><button>Upload and check 上傳並檢查</button>
                </form>
                <p class="hint">The bundle is checked at once; a second administrator approves the install. 上傳後立即驗證，由另一位管理員核准安裝。</p>`
      }`,
      v,
      notice,
    )
  }
  return { dir, stagedPath, staged, event, page }
}

/** S10: the page, and a signed image uploaded (streamed to disk, checked, staged for a second administrator). */
function registerUpdateUpload(r: Routes): void {
  const { app, deps: d } = r
  const { dir, stagedPath, staged, event, page } = updateHelpers(r)
  app.get('/system/update', { preValidation: r.need(['admin']) }, async (req, reply) => r.page(reply, page(r.viewer(req, reply)!)))

  void app.register((scope, _opts, registered) => {
    // The bundle as a stream to disk, never in memory (a few hundred MB).
    scope.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload))
    scope.post('/system/update/upload', { preValidation: r.need(['admin']), bodyLimit: MAX_BYTES }, async (req, reply) => {
      const v = r.viewer(req, reply)!
      const f = d.firmware()
      if (!f.slot || staged()) return r.page(reply.code(409), page(v, { kind: 'error', text: 'Not now: see the page.' }))
      mkdirSync(dir, { recursive: true, mode: 0o700 })
      const file = join(dir, `upload-${randomBytes(6).toString('hex')}.sgfw`)
      let bytes = 0
      const hash = createHash('sha256')
      const stream = req.body as Readable
      stream.on('data', (c: Buffer) => {
        bytes += c.length
        hash.update(c)
        if (bytes > MAX_BYTES) stream.destroy(new Error('the upload is larger than 2 GiB'))
      })
      try {
        await pipeline(stream, createWriteStream(file, { mode: 0o600 }))
      } catch (err) {
        rmSync(file, { force: true })
        return r.page(reply.code(400), page(v, { kind: 'error', text: `Upload failed: ${(err as Error).message}` }))
      }
      const sha256 = hash.digest('hex')
      event('received', '?', 'ok', `${bytes} bytes from ${v.user}, SHA-256 ${sha256}`)
      const fd = openSync(file, 'r')
      const check = join(dir, `.check-${randomBytes(4).toString('hex')}`)
      try {
        const b = openBundle(fd, fstatSync(fd).size, trustedKeys(d.firmwareKeys()))
        extractBundle(fd, b, check)
        const m = b.manifest
        // #31: a lower version than the running one, or the same again (a replay), is a downgrade: its approval says so.
        const downgrade = /^\d+\.\d+\.\d+$/.test(f.running) && compareVersions(m.version, f.running) <= 0
        const s: StagedUpdate = {
          file,
          sha256,
          uploadedBy: v.user,
          at: d.clock.now(),
          version: m.version,
          securityVersion: m.securityVersion,
          files: m.files.length,
          signedBy: b.signedBy,
          ...(downgrade ? { downgrade } : {}),
        }
        writeFileAtomic(stagedPath, JSON.stringify(s), 0o600)
        event('verified', m.version, 'ok', `signature by ${b.signedBy.slice(0, 16)}, manifest and ${m.files.length} files; staged by ${v.user}`)
        return r.page(reply, page(v, { kind: 'ok', text: `Version ${m.version} checked and staged. A second administrator approves the install.` }))
      } catch (err) {
        rmSync(file, { force: true })
        if (!(err instanceof BundleError)) throw err
        event('refused', '?', 'failed', err.message)
        return r.page(reply.code(400), page(v, { kind: 'error', text: `Refused: ${err.message}` }))
      } finally {
        closeSync(fd)
        rmSync(check, { recursive: true, force: true })
      }
    })
    registered()
  })
}

/** S10: the staged update withdrawn, or approved by a second administrator and installed. */
function registerUpdateDecision(r: Routes): void {
  const { app, deps: d } = r
  const { dir, stagedPath, staged, event, page } = updateHelpers(r)
  app.post('/system/update/withdraw', { preValidation: r.need(['admin']) }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const s = staged()
    if (s) {
      rmSync(s.file, { force: true })
      rmSync(stagedPath, { force: true })
      event('withdrawn', s.version, 'ok', `by ${v.user}`)
    }
    return r.page(reply, page(v, { kind: 'ok', text: 'No update is staged.' }))
  })

  app.post('/system/update/approve', { preValidation: r.need(['admin']) }, async (req, reply) => {
    const v = r.viewer(req, reply)!
    const s = staged()
    if (!s || !d.changeControl.restart.supervised)
      return r.page(reply.code(409), page(v, { kind: 'error', text: 'No update waits for approval under a service manager.' }))
    if (s.uploadedBy === v.user)
      return r.page(reply.code(409), page(v, { kind: 'error', text: 'A second administrator approves it, not the one who uploaded it.' }))
    // #31: not by an account the uploader made or changed.
    const minted = d.accounts.mintedBy(v.user, s.uploadedBy, approvalWindow(d, s.at))
    if (minted) {
      event('approval-refused', s.version, 'failed', minted)
      return r.page(reply.code(409), page(v, { kind: 'error', text: minted }))
    }
    if (s.downgrade && formBody(req).downgrade !== 'yes')
      return r.page(reply.code(400), page(v, { kind: 'error', text: 'This is a downgrade: approve the downgrade explicitly. 請勾選核准降版。' }))
    if (!(await d.accounts.verifyCode(v.user, formBody(req).code ?? '')))
      return r.page(reply.code(400), page(v, { kind: 'error', text: 'That authenticator code is not right.' }))
    writeFileAtomic(join(dir, APPROVED_UPDATE), JSON.stringify({ ...s, approvedBy: v.user }), 0o600)
    rmSync(stagedPath, { force: true })
    event('approved', s.version, 'ok', `${s.downgrade ? 'a downgrade, ' : ''}uploaded by ${s.uploadedBy}, approved by ${v.user}`)
    setTimeout(() => d.changeControl.restart.run(v.user, `firmware ${s.version} approved`), 200).unref()
    return r.page(reply, page(v, { kind: 'ok', text: `Version ${s.version} approved: the box restarts into it, on trial.` }))
  })
}
