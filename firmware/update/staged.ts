import { createHash } from 'node:crypto'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { BundleError, type Manifest } from './bundle.ts'
import type { Slots } from './slots.ts'

/**
 * An update uploaded on the admin page: staged once checked, approved by a
 * second administrator, then installed by the service manager before the next
 * start (the box may not write its own firmware). Files in `<dataDir>/updates/`.
 */
export const STAGED_UPDATE = 'staged.json'
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
}

/**
 * Installs an approved update, if there is one: the file must still be the one
 * that was checked and approved (its SHA-256), and is checked again as it is
 * installed. The upload is removed either way. Returns the manifest installed.
 */
export function installApproved(dataDir: string, slots: Slots, configVersion?: number): Manifest | undefined {
  const path = join(dataDir, 'updates', APPROVED_UPDATE)
  if (!existsSync(path)) return undefined
  const a = JSON.parse(readFileSync(path, 'utf8')) as StagedUpdate
  try {
    if (!a.approvedBy || a.approvedBy === a.uploadedBy) throw new BundleError('the update was not approved by a second administrator')
    if (!existsSync(a.file) || createHash('sha256').update(readFileSync(a.file)).digest('hex') !== a.sha256)
      throw new BundleError('the uploaded file changed after it was approved')
    return slots.install(a.file, configVersion)
  } catch (err) {
    if (err instanceof Error) slots.refused(a.version, err.message)
    throw err
  } finally {
    rmSync(path, { force: true })
    rmSync(a.file, { force: true })
  }
}
