import { createHash } from 'node:crypto'
import { existsSync, lstatSync, readFileSync, rmSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { BundleError, type Manifest } from './bundle.ts'
import type { Slots } from './slots.ts'

/**
 * An update uploaded on the admin page: staged once checked, approved by a
 * second administrator, then installed by the service manager before the next
 * start (the box may not write its own firmware). Files in `<dataDir>/updates/`.
 */
export const STAGED_UPDATE = 'staged.json'
/** Where uploads wait for their approval and install. */
export const updatesDir = (dataDir: string): string => join(dataDir, 'updates')
export const APPROVED_UPDATE = 'approved.json'

export interface StagedUpdate {
  file: string
  sha256: string
  uploadedBy: string
  at: number
  version: string
  securityVersion: number
  files: number
  signedBy: string
  approvedBy?: string
  /** #31: a lower version than the running one, or the same again: installed only because the approval said so. */
  downgrade?: boolean
}

/**
 * Installs an approved update, if there is one: the file must still be the one
 * that was checked and approved (its SHA-256), and is checked again as it is
 * installed. The upload is removed either way. Returns the manifest installed.
 */
export function installApproved(dataDir: string, slots: Slots, configVersion?: number): Manifest | undefined {
  const dir = updatesDir(dataDir)
  const path = join(dir, APPROVED_UPDATE)
  if (!existsSync(path)) return undefined
  const a = JSON.parse(readFileSync(path, 'utf8')) as StagedUpdate
  // This runs as root on a file the box's user wrote: it names an upload in the updates directory, a plain
  // file, or nothing is read or removed (never a path elsewhere, never through a link).
  const file = typeof a.file === 'string' ? resolve(a.file) : ''
  if (dirname(file) !== dir || !/^upload-[0-9a-f]{12}\.sgfw$/.test(basename(file)) || !lstatSync(file, { throwIfNoEntry: false })?.isFile()) {
    rmSync(path, { force: true })
    slots.refused(String(a.version), 'the approved update does not name an upload of this box')
    throw new BundleError('the approved update does not name an upload of this box')
  }
  try {
    if (!a.approvedBy || a.approvedBy === a.uploadedBy) throw new BundleError('the update was not approved by a second administrator')
    if (createHash('sha256').update(readFileSync(file)).digest('hex') !== a.sha256) throw new BundleError('the uploaded file changed after it was approved')
    return slots.install(file, configVersion, { allowDowngrade: a.downgrade === true })
  } catch (err) {
    if (err instanceof Error) slots.refused(a.version, err.message)
    throw err
  } finally {
    rmSync(path, { force: true })
    rmSync(file, { force: true })
  }
}
